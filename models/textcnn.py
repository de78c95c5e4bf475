"""Text-CNN over word vectors (Kim 2014, as bc-LSTM used it): its penultimate layer is the utterance feature.

Pure torch. Input ``[B, T, D]`` word vectors + ``lengths [B]``; parallel 1-D convolutions (one per kernel
size) -> ReLU -> max over the *valid* time steps (padding never wins the max) -> concatenation ->
fully-connected ``hidden`` layer (ReLU) = the feature -> dropout -> logits.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from models.base import AffectModel, Batch, ModelConfig
from models.registry import register_model


class TextCNN(nn.Module):
    def __init__(self, emb_dim: int, n_classes: int, *, filters: int = 50, kernel_sizes: tuple[int, ...] = (3, 4, 5),
                 hidden: int = 100, dropout: float = 0.5) -> None:
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(emb_dim, filters, k, padding=k - 1) for k in self.kernel_sizes)
        self.fc = nn.Linear(filters * len(self.kernel_sizes), hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The ``hidden``-d penultimate features ``[B, hidden]``."""
        h = x.transpose(1, 2)  # [B, D, T]; dropout only after the hidden layer, as Kim 2014
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs, strict=True):
            c = torch.relu(conv(h))  # [B, F, T + k - 1] ("full" convolution: short texts still give outputs)
            steps = torch.arange(c.shape[2], device=x.device)[None, :]
            valid = steps < (lengths[:, None] + k - 1)
            pooled.append(c.masked_fill(~valid[:, None, :], float("-inf")).amax(2))
        return torch.relu(self.fc(torch.cat(pooled, 1)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.features(x, lengths)))


def pad_sequences(seqs: list[torch.Tensor], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, D] zero-padded (first ``max_len`` words kept) + lengths [B] (>= 1)."""
    lengths = torch.tensor([max(1, min(len(s), max_len)) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
    for i, s in enumerate(seqs):
        out[i, : min(len(s), max_len)] = s[:max_len]
    return out, lengths


LENGTHS = "lengths"  # Batch.x key of the word counts [B] beside the padded word vectors [B, T, D]


class TextCNNConfig(ModelConfig):
    filters: int = Field(50, ge=1)
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    hidden: int = Field(100, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)


@register_model("textcnn")
class TextCNNModel(AffectModel):
    """:class:`TextCNN` behind the one model interface, so the one trainer fits it. Reads its single
    modality as ``[B, T, D]`` zero-padded word vectors with ``x["lengths"]``; ``embedding`` is the
    penultimate layer (the feature written to the store)."""

    Config = TextCNNConfig
    missing_policy = "rows without words are not fed (the feature writer leaves them missing)"
    cfg: TextCNNConfig

    def __init__(self, cfg: TextCNNConfig, *, dims: dict[str, int], n_classes: int) -> None:
        super().__init__(cfg, dims=dims, n_classes=n_classes)
        if len(dims) != 1:
            raise ValueError(f"the text-CNN reads one word-sequence modality, got {sorted(dims)}")
        self.modality = self.modalities[0]
        self.net = TextCNN(dims[self.modality], n_classes, filters=cfg.filters, kernel_sizes=cfg.kernel_sizes,
                           hidden=cfg.hidden, dropout=cfg.dropout)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        emb = self.net.features(batch.x[self.modality], batch.x[LENGTHS])
        return {"logits": self.net.out(self.net.drop(emb)), "embedding": emb}
