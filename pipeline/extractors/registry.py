"""One registry for extractors; modules under ``pipeline/extractors/`` are discovered on first lookup."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pipeline.extractors.base import Extractor

_EXTRACTORS: dict[str, type[Extractor]] = {}
_DISCOVERED = False
T = TypeVar("T")


def register_extractor(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in _EXTRACTORS and _EXTRACTORS[name] is not cls:
            raise ValueError(f"extractor name {name!r} registered twice")
        cls.name = name  # type: ignore[attr-defined]
        _EXTRACTORS[name] = cls  # type: ignore[assignment]
        return cls

    return wrap


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    from pipeline import extractors

    for info in pkgutil.iter_modules(extractors.__path__):
        if info.name not in {"base", "registry"} and not info.name.startswith("_"):
            importlib.import_module(f"pipeline.extractors.{info.name}")
    _DISCOVERED = True


def list_extractors() -> list[str]:
    _discover()
    return sorted(_EXTRACTORS)


def get_extractor_class(name: str) -> type[Extractor]:
    _discover()
    if name not in _EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; registered: {sorted(_EXTRACTORS)}")
    return _EXTRACTORS[name]


def get_extractor(name: str, **cfg: Any) -> Extractor:
    cls = get_extractor_class(name)
    return cls(cls.Config(**cfg))
