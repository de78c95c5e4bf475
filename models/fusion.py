"""Fusion networks that sit on top of a joint embedding (ARGF's second stage, Table 6's alternatives).

A fusion module takes one ``[B, k]`` code per modality and returns a fused vector plus extras (e.g. the
GFN's vertex weights). It is chosen by name, so ARGF's fusion is replaceable without touching ARGF:
``get_fusion("gfn", k=50, modalities=["text", "audio", "video"], dropout=0.1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from models.registry import Registry


class FusionModule(nn.Module):
    """Base: ``forward(codes) -> (fused [B, out_dim], extras)``; ``out_dim`` is set by the subclass."""

    fusion_name: ClassVar[str] = ""

    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__()
        self.k, self.modalities, self.dropout = k, list(modalities), dropout
        self.out_dim = k

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError


FUSIONS: Registry[FusionModule] = Registry("fusion", "models", skip={"base", "registry", "fusion"},
                                           name_attr="fusion_name")
register_fusion = FUSIONS.register
list_fusions = FUSIONS.names


def get_fusion(name: str, *, k: int, modalities: Sequence[str], dropout: float = 0.0) -> FusionModule:
    return FUSIONS.get(name)(k=k, modalities=modalities, dropout=dropout)
