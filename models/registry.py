"""One registry for all models (torchvision style): ``@register_model("argf")`` / ``get_model("argf")``.

Modules under ``models/`` are discovered on first lookup, so adding an architecture means adding one
file; nothing else lists model names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from models.base import AffectModel

_MODELS: dict[str, type[AffectModel]] = {}
_DISCOVERED = False
_NOT_MODEL_MODULES = {"base", "registry", "fusion"}
T = TypeVar("T")


def register_model(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice ({_MODELS[name].__qualname__}, {cls})")
        cls.registry_name = name  # type: ignore[attr-defined]
        _MODELS[name] = cls  # type: ignore[assignment]
        return cls

    return wrap


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import models

    for info in pkgutil.iter_modules(models.__path__):
        if info.name not in _NOT_MODEL_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"models.{info.name}")
    _DISCOVERED = True


def list_models() -> list[str]:
    _discover()
    return sorted(_MODELS)


def get_model_class(name: str) -> type[AffectModel]:
    _discover()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_MODELS)}")
    return _MODELS[name]


def get_model(name: str, *, dims: dict[str, int], n_classes: int, **cfg: Any) -> AffectModel:
    """Build a registered model from its typed config (unknown keys are an error)."""
    cls = get_model_class(name)
    return cls(cls.Config(**cfg), dims=dims, n_classes=n_classes)
