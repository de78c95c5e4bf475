"""The fusion structures ARGF's Table 6 compares with its GFN, as drop-in :class:`FusionModule`s.

Each takes the per-modality joint-embedding codes ``{m: [B, k]}`` (ARGF's encoders, tanh codes) and
returns ``(fused [B, out_dim], extras)``; ARGF's decision module (eq. 16) sits on top of every one of
them, so only the fusion structure differs: ``get_model("argf", ..., fusion="tfn")``.

* ``concat``: ``tanh(FC([z_1; ...; z_M]))`` -> k.
* ``multiply``: ``tanh(FC(z_1 * ... * z_M))`` (element-wise product) -> k.
* ``weighted_avg``: ``sum_m w_m z_m`` with ``w = softmax(theta)``, one learned scalar per modality
  (the weights are returned as ``modality_weights``) -> k.
* ``tfn``: tensor fusion (Zadeh et al. 2017): the outer product of the ``[z_m; 1]`` vectors, then FC.
  Each code is first projected to ``TFN_DIM`` (16) dims: the outer product of three 51-d vectors would
  give 132,651 features and a 6.6 M-weight FC at k = 50, dwarfing everything else in the table.
* ``lmf``: low-rank multimodal fusion (Liu et al. 2018), rank ``LMF_RANK`` (4): the same tensor product
  with each modality's weight tensor factorised, ``sum_r prod_m ([z_m; 1] W_m^r)`` -> k.
* ``dfg``: the dynamic fusion graph of Graph-MFN (Zadeh et al. 2018): one vertex per subset of
  modalities; each multimodal vertex is an MLP of its parents scaled by their *efficacies*, sigmoid gates
  computed from all unimodal codes; output the concatenation of all 2^M - 1 vertices (7k for three);
  the efficacies are returned as ``efficacies``.

Missing modalities: the codes arrive already zeroed by ARGF (its ``zero_code`` policy); nothing here
treats them specially, as in the paper's comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor, nn

from models.fusion import FusionModule, register_fusion

TFN_DIM = 16
LMF_RANK = 4


def _with_one(z: Tensor) -> Tensor:
    return torch.cat([z, torch.ones_like(z[:, :1])], dim=-1)


@register_fusion("concat")
class ConcatFusion(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(len(self.modalities) * k, k), nn.Tanh())

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.fc(torch.cat([codes[m] for m in self.modalities], dim=-1)), {}


@register_fusion("multiply")
class MultiplyFusion(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(k, k), nn.Tanh())

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        prod = codes[self.modalities[0]]
        for m in self.modalities[1:]:
            prod = prod * codes[m]
        return self.fc(prod), {}


@register_fusion("weighted_avg")
class WeightedAverageFusion(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        self.theta = nn.Parameter(torch.zeros(len(self.modalities)))  # starts as the plain mean

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        w = torch.softmax(self.theta, dim=0)
        fused = sum(w[i] * codes[m] for i, m in enumerate(self.modalities))
        batch = codes[self.modalities[0]].shape[0]
        return fused, {"modality_weights": w.unsqueeze(0).expand(batch, -1)}  # type: ignore[return-value]


@register_fusion("tfn")
class TensorFusion(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(k, TFN_DIM), nn.Tanh()) for m in self.modalities})
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear((TFN_DIM + 1) ** len(self.modalities), k), nn.Tanh())

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        outer = _with_one(self.proj[self.modalities[0]](codes[self.modalities[0]]))
        for m in self.modalities[1:]:
            z = _with_one(self.proj[m](codes[m]))
            outer = torch.einsum("bi,bj->bij", outer, z).flatten(1)
        return self.fc(outer), {}


@register_fusion("lmf")
class LowRankFusion(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(LMF_RANK, k + 1, k) * (1.0 / (k + 1)) ** 0.5) for m in self.modalities}
        )
        self.rank_weights = nn.Parameter(torch.full((LMF_RANK,), 1.0 / LMF_RANK))
        self.bias = nn.Parameter(torch.zeros(k))
        self.drop = nn.Dropout(dropout)

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        prod: Tensor | None = None
        for m in self.modalities:
            f = torch.einsum("bi,rio->bro", _with_one(self.drop(codes[m])), self.factors[m])  # [B, r, k]
            prod = f if prod is None else prod * f
        assert prod is not None
        return torch.tanh(torch.einsum("bro,r->bo", prod, self.rank_weights) + self.bias), {}


@register_fusion("dfg")
class DynamicFusionGraph(FusionModule):
    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        n = len(self.modalities)
        # Vertices: every non-empty subset of modality indices, smallest first.
        self.subsets: list[tuple[int, ...]] = [s for r in range(1, n + 1) for s in combinations(range(n), r)]
        # Parents of a multimodal vertex: every subset of it with one element fewer... and, for the full
        # set, every proper subset (Graph-MFN connects the trimodal vertex to all lower vertices).
        self.parents: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for s in self.subsets:
            if len(s) == 1:
                continue
            self.parents[s] = [p for p in self.subsets if len(p) < len(s) and set(p) < set(s)
                               and (len(s) == n or len(p) == len(s) - 1)]
        self.edges = [(p, s) for s, ps in self.parents.items() for p in ps]
        self.efficacy = nn.Sequential(nn.Linear(n * k, len(self.edges)), nn.Sigmoid())
        self.vertex_mlp = nn.ModuleDict({
            self._key(s): nn.Sequential(nn.Dropout(dropout), nn.Linear(len(ps) * k, k), nn.Tanh())
            for s, ps in self.parents.items()
        })
        self.out_dim = len(self.subsets) * k

    @staticmethod
    def _key(s: tuple[int, ...]) -> str:
        return "v" + "".join(map(str, s))

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        z = [codes[m] for m in self.modalities]
        alpha = self.efficacy(torch.cat(z, dim=-1))  # [B, n_edges]
        col = {e: i for i, e in enumerate(self.edges)}
        vertex: dict[tuple[int, ...], Tensor] = {(i,): z[i] for i in range(len(z))}
        for s in self.subsets:
            if len(s) == 1:
                continue
            inp = [alpha[:, col[(p, s)] : col[(p, s)] + 1] * vertex[p] for p in self.parents[s]]
            vertex[s] = self.vertex_mlp[self._key(s)](torch.cat(inp, dim=-1))
        return torch.cat([vertex[s] for s in self.subsets], dim=-1), {"efficacies": alpha}
