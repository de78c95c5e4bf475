"""Fusion networks that sit on top of a joint embedding (ARGF's second stage, Table 6's alternatives).

A fusion module takes one ``[B, k]`` code per modality and returns a fused vector plus extras (e.g. the
GFN's vertex weights). It is chosen by name, so ARGF's fusion is replaceable without touching ARGF:
``get_fusion("gfn", k=50, modalities=["text", "audio", "video"], dropout=0.1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

from torch import Tensor, nn

from models.registry import _discover

_FUSIONS: dict[str, type[FusionModule]] = {}
T = TypeVar("T")


class FusionModule(nn.Module):
    """Base: ``forward(codes) -> (fused [B, out_dim], extras)``; ``out_dim`` is set by the subclass."""

    fusion_name: ClassVar[str] = ""

    def __init__(self, k: int, modalities: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__()
        self.k, self.modalities, self.dropout = k, list(modalities), dropout
        self.out_dim = k

    def forward(self, codes: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError


def register_fusion(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        cls.fusion_name = name  # type: ignore[attr-defined]
        _FUSIONS[name] = cls  # type: ignore[assignment]
        return cls

    return wrap


def list_fusions() -> list[str]:
    _discover()
    return sorted(_FUSIONS)


def get_fusion(name: str, *, k: int, modalities: Sequence[str], dropout: float = 0.0) -> FusionModule:
    _discover()
    if name not in _FUSIONS:
        raise KeyError(f"unknown fusion {name!r}; registered: {sorted(_FUSIONS)}")
    return _FUSIONS[name](k=k, modalities=modalities, dropout=dropout)
