"""Pure-torch model zoo: modules, losses and update steps. Never reads files.

Every architecture lives in its own module and registers itself with ``@register_model``;
``get_model(name, dims=..., n_classes=..., **cfg)`` builds one. The trainer in ``pipeline/`` is written
once and calls only the :class:`models.base.AffectModel` interface.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AffectModel", "Batch", "get_model", "get_model_class", "list_models", "register_model"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `models.modalities` (torch-free) can be imported without importing torch.
    if name in ("AffectModel", "Batch"):
        return getattr(importlib.import_module("models.base"), name)
    if name in __all__:
        return getattr(importlib.import_module("models.registry"), name)
    raise AttributeError(name)
