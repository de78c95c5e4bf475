"""Text-CNN over word vectors (Kim 2014, as bc-LSTM used it): its penultimate layer is the utterance feature.

Pure torch. Input ``[B, T, D]`` word vectors + ``lengths [B]``; parallel 1-D convolutions (one per kernel
size) -> ReLU -> max over the *valid* time steps (padding never wins the max) -> concatenation ->
fully-connected ``hidden`` layer (ReLU) = the feature -> dropout -> logits.
"""

from __future__ import annotations

import torch
from torch import nn


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
