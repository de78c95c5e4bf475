"""Unimodal Context Learning Network (ARGF's UCLN = the bc-LSTM of Poria et al. 2017), one modality.

Input: the utterances of one video, ``x[m]`` ``[B, U, D]`` with ``mask`` ``[B, U]`` (real utterances
first, padding after). A bidirectional LSTM (GRU option) reads the real utterances only (packed
sequence, so the backward direction does not start in the padding), then Dense(d, tanh) gives the
context features (d = 50 on MOSI) and a dense head gives the classes. Cross-entropy over real utterances
only, plus the bc-LSTM's L2 penalty on the context layer's kernel.

The paper trains one UCLN per modality separately, so a model trains the ``modality`` of its config;
``forward`` returns ``logits`` [B, U, C] and ``context`` [B, U, d] (written back to the store).
Missing modality (``present[m]`` False for a video or an utterance): its input is zeroed (``zeros``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class UCLNConfig(ModelConfig):
    modality: str = "text"
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: int = 100  # units per direction (bc-LSTM)
    d: int = 50  # context feature size (50 for MOSI/MOSEI, 100 for IEMOCAP)
    dropout_rnn: float = 0.4
    dropout: float = 0.2
    dense_l2: float = 1e-3  # Keras-style L2 on the context layer's kernel (bc-LSTM)
    optimizer: Literal["adadelta", "adam"] = "adadelta"  # paper: Adadelta; bc-LSTM code: Adam 1e-4
    lr: float | None = None  # None: 1.0 for Adadelta, 1e-4 for Adam
    weight_decay: float = 0.0


@register_model("ucln")
class UCLN(AffectModel):
    Config = UCLNConfig
    input_kind = "video"
    per_modality = True  # one UCLN per modality (its `modality` field), as ARGF's first stage
    missing_policy = "zeros"
    search_space: ClassVar[dict[str, list | tuple]] = {
        "cell": ["lstm", "gru"],
        "hidden": [50, 100, 200],
        "dropout_rnn": (0.0, 0.6),
        "dropout": (0.0, 0.6),
        "optimizer": ["adadelta", "adam"],
    }
    cfg: UCLNConfig

    def __init__(self, cfg: UCLNConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        if cfg.modality not in dims:
            raise ValueError(f"UCLN modality {cfg.modality!r} not among the inputs {sorted(dims)}")
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn(dims[cfg.modality], cfg.hidden, batch_first=True, bidirectional=True)
        self.drop_rnn = nn.Dropout(cfg.dropout_rnn)
        self.context = nn.Linear(2 * cfg.hidden, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d, n_classes)

    @staticmethod
    def _lengths(mask: Tensor | None, b: int, u: int) -> Tensor:
        if mask is None:
            return torch.full((b,), u, dtype=torch.long)
        lengths = mask.sum(1).long().cpu()
        # Packing assumes real utterances first; a hole in the mask would silently mix in padding.
        prefix = torch.arange(u).unsqueeze(0) < lengths.unsqueeze(1)
        if not torch.equal(prefix, mask.bool().cpu()):
            raise ValueError("UCLN expects real utterances first in each video (mask must be a prefix)")
        return lengths.clamp_min(1)  # an all-padding row still runs (its outputs are masked out)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x = batch.x[self.cfg.modality]
        b, u, _ = x.shape
        pres = batch.present.get(self.cfg.modality)
        if pres is not None:  # torch.where, not a product: a missing row may hold NaN
            pres = pres.bool().unsqueeze(-1) if pres.dim() == 2 else pres.bool().view(b, 1, 1)
            x = torch.where(pres, x, torch.zeros_like(x))
        packed = pack_padded_sequence(x, self._lengths(batch.mask, b, u), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=u)
        ctx = torch.tanh(self.context(self.drop_rnn(h)))
        return {"logits": self.head(self.drop(ctx)), "context": ctx}

    def loss(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        logits, y = out["logits"], batch.y
        if batch.mask is not None:  # cross-entropy over real utterances only
            logits, y = logits[batch.mask.bool()], y[batch.mask.bool()]
        ce = nn.functional.cross_entropy(logits, y)
        return ce + self.cfg.dense_l2 * self.context.weight.pow(2).sum()

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        if cfg.optimizer == "adadelta":
            opt: torch.optim.Optimizer = torch.optim.Adadelta(
                self.parameters(), lr=cfg.lr or 1.0, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.Adam(self.parameters(), lr=cfg.lr or 1e-4, weight_decay=cfg.weight_decay)
        return {"all": opt}
