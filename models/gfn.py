"""Graph Fusion Network (ARGF, Mai, Hu & Xing, AAAI 2020, eq. 10-15 and Fig. 2).

Three layers of vertices over the per-modality codes ``V_m`` ([B, k] each):

* unimodal: ``alpha_m = sigmoid(MAN(V_m))`` (one MAN shared by all modalities),
  ``U = 1/3 * sum_m alpha_m V_m`` (eq. 10);
* bimodal: ``V_ij = MLP_b([V_i; V_j])`` for the three pairs (eq. 11), similarity
  ``S_ij = softmax(V_i) . softmax(V_j)`` (eq. 12), ``alpha^_ij = (alpha_i + alpha_j) / (S_ij + 0.5)``
  (eq. 13), softmax over the pairs (eq. 14), ``B = sum alpha_ij V_ij`` (eq. 15);
* trimodal: six vertices, each pair of bimodal vertices and each bimodal vertex with the unimodal vertex
  it does not contain, fused by a second MLP of the same shape (parameters not shared) and weighted the
  same way (the weight of a bimodal parent is its eq. 14 weight); ``T = sum alpha_t V_t``.

Output ``[U; B; T]`` (3k). ``gfn_code`` is the released code's version of the same graph (named option):
each bimodal/trimodal vertex is ``elu(weight * MLP(...))`` and the layer output their plain sum; the
trimodal similarities use the softmax of the *unweighted* bimodal MLP outputs and the bimodal parents
enter the trimodal edge weights with their unnormalised eq. 13 weight; the trimodal MLP reads the
weighted (elu) bimodal vertices. The decision module of eq. 16 lives in ARGF so that every fusion of Table 6
shares it. Extras: ``vertex_weights`` [B, 12] = (3 unimodal, 3 bimodal, 6 trimodal), in the order of
:attr:`GraphFusion.vertex_names`, for Fig. 6-style plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor, nn

from models.fusion import FusionModule, register_fusion

_SHORT = {"text": "l", "audio": "a", "video": "v"}


def _vertex_mlp(k: int, dropout: float, hidden: int = 64) -> nn.Sequential:
    # 2k > 64 > k with LeakyReLU then tanh (paper: "two dense layers activated by Leaky ReLU and tanh").
    return nn.Sequential(
        nn.Linear(2 * k, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(hidden, k), nn.Tanh()
    )


def _similarity(a: Tensor, b: Tensor) -> Tensor:
    """Eq. 12: inner product of the softmax-normalised vectors, in (0, 1); [B]."""
    return (torch.softmax(a, dim=-1) * torch.softmax(b, dim=-1)).sum(-1)


def _edge_weights(parents: list[tuple[Tensor, Tensor, Tensor, Tensor]]) -> Tensor:
    """Eq. 13-14 for a layer: parents = [(V_x, V_y, w_x, w_y)] -> softmax over vertices, [B, n]."""
    raw = torch.stack([(wx + wy) / (_similarity(vx, vy) + 0.5) for vx, vy, wx, wy in parents], dim=1)
    return torch.softmax(raw, dim=1)


@register_fusion("gfn")
class GraphFusion(FusionModule):
    """Hierarchical graph fusion of exactly three modality codes; ``out_dim = 3k``."""

    code_style: bool = False

    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__(k, modalities, dropout)
        if len(self.modalities) != 3:
            raise ValueError(f"GFN fuses exactly three modalities, got {self.modalities}")
        self.out_dim = 3 * k
        self.man = nn.Linear(k, 1)  # Modality Attention Network, shared (one Theta_MAN in eq. 10)
        self.bimodal_mlp = _vertex_mlp(k, dropout)
        self.trimodal_mlp = _vertex_mlp(k, dropout)
        m = self.modalities
        self.pairs: list[tuple[int, int]] = list(combinations(range(3), 2))  # (0,1) (0,2) (1,2)
        # Trimodal parents: every pair of bimodal vertices, then every bimodal vertex with the unimodal
        # vertex it lacks. Indices into the bimodal / unimodal lists.
        self.tri_bb: list[tuple[int, int]] = list(combinations(range(3), 2))
        self.tri_bu: list[tuple[int, int]] = [(p, next(i for i in range(3) if i not in pr))
                                              for p, pr in enumerate(self.pairs)]
        s = [_SHORT.get(x, x) for x in m]
        bi = [s[i] + s[j] for i, j in self.pairs]
        self.vertex_names: list[str] = (
            s + bi + [f"{bi[a]}|{bi[b]}" for a, b in self.tri_bb] + [f"{bi[p]}|{s[u]}" for p, u in self.tri_bu]
        )

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if self.code_style:
            return self._forward_code(codes)
        v = [codes[m] for m in self.modalities]
        # --- unimodal layer (eq. 10)
        a = [torch.sigmoid(self.man(x)).squeeze(-1) for x in v]  # 3 x [B]
        u = sum(ai.unsqueeze(-1) * vi for ai, vi in zip(a, v, strict=True)) / 3.0
        # --- bimodal layer (eq. 11-15)
        vb = [self.bimodal_mlp(torch.cat([v[i], v[j]], dim=-1)) for i, j in self.pairs]
        wb = _edge_weights([(v[i], v[j], a[i], a[j]) for i, j in self.pairs])  # [B, 3]
        b = (wb.unsqueeze(-1) * torch.stack(vb, dim=1)).sum(1)
        # --- trimodal layer: same MLP shape, same weighting
        parents = [(vb[x], vb[y], wb[:, x], wb[:, y]) for x, y in self.tri_bb]
        parents += [(vb[p], v[q], wb[:, p], a[q]) for p, q in self.tri_bu]
        vt = [self.trimodal_mlp(torch.cat([x, y], dim=-1)) for x, y, _, _ in parents]
        wt = _edge_weights(parents)  # [B, 6]
        t = (wt.unsqueeze(-1) * torch.stack(vt, dim=1)).sum(1)
        weights = torch.cat([torch.stack(a, dim=1), wb, wt], dim=1)  # [B, 12]
        return torch.cat([u, b, t], dim=-1), {"vertex_weights": weights}

    def _forward_code(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        elu = nn.functional.elu
        v = [codes[m] for m in self.modalities]
        a = [torch.sigmoid(self.man(x)).squeeze(-1) for x in v]
        u = sum(ai.unsqueeze(-1) * vi for ai, vi in zip(a, v, strict=True)) / 3.0
        raw_b = torch.stack([(a[i] + a[j]) / (_similarity(v[i], v[j]) + 0.5) for i, j in self.pairs], 1)
        wb = torch.softmax(raw_b, dim=1)
        mb = [self.bimodal_mlp(torch.cat([v[i], v[j]], dim=-1)) for i, j in self.pairs]
        vb = [elu(wb[:, p : p + 1] * mb[p]) for p in range(3)]
        b = sum(vb)
        parents = [(mb[x], mb[y], raw_b[:, x], raw_b[:, y]) for x, y in self.tri_bb]
        parents += [(mb[p], v[q], raw_b[:, p], a[q]) for p, q in self.tri_bu]
        wt = _edge_weights(parents)
        inputs = [(vb[x], vb[y]) for x, y in self.tri_bb] + [(vb[p], v[q]) for p, q in self.tri_bu]
        t = sum(elu(wt[:, i : i + 1] * self.trimodal_mlp(torch.cat(xy, dim=-1))) for i, xy in enumerate(inputs))
        weights = torch.cat([torch.stack(a, dim=1), wb, wt], dim=1)
        return torch.cat([u, b, t], dim=-1), {"vertex_weights": weights}  # type: ignore[list-item]

    def functional_flops(self, batch_size: int) -> int:
        """FLOPs of the tensor arithmetic outside nn.Modules (for models.flops): softmax-similarities,
        edge weights, weighted sums. Softmax of a k-vector ~ 3k (exp, sum, divide)."""
        k = self.k
        sim = 3 * k + 3 * k + 2 * k  # two softmaxes + dot product
        uni = 3 * 2 * k + 2 * k  # scale three vectors, sum, /3
        bi = 3 * (sim + 3) + 3 * 3 + 3 * 2 * k  # 3 sims + edge weights, softmax, weighted sum
        tri = 6 * (sim + 3) + 3 * 6 + 6 * 2 * k
        return batch_size * (uni + bi + tri)


@register_fusion("gfn_code")
class GraphFusionCode(GraphFusion):
    """The authors' released GFN (see the module docstring); same parameters as ``gfn``."""

    code_style = True
