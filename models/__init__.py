"""Pure-torch model zoo: modules, losses and update steps. Never reads files.

Every architecture lives in its own module and registers itself with ``@register_model``;
``get_model(name, dims=..., n_classes=..., **cfg)`` builds one. The trainer in ``pipeline/`` is written
once and calls only the :class:`models.base.AffectModel` interface.

The names below are resolved on first use (PEP 562): ``models.registry`` also serves the extractor
registry, and feature extraction must not pay torch's import (1.4 s, ~250 MB per process).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"AffectModel": "models.base", "Batch": "models.base", "get_model": "models.registry",
         "get_model_class": "models.registry", "list_models": "models.registry", "register_model": "models.registry"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
