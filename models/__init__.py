"""Pure-torch model zoo: modules, losses and update steps. Never reads files.

Every architecture lives in its own module and registers itself with ``@register_model``;
``get_model(name, dims=..., n_classes=..., **cfg)`` builds one. The trainer in ``pipeline/`` is written
once and calls only the :class:`models.base.AffectModel` interface.
"""

from models.base import AffectModel, Batch
from models.registry import get_model, get_model_class, list_models, register_model

__all__ = ["AffectModel", "Batch", "get_model", "get_model_class", "list_models", "register_model"]
