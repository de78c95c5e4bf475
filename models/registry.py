"""Name -> class registries (torchvision style): ``@register_model("argf")`` / ``get_model("argf")``.

:class:`Registry` is the one mechanism behind the model, fusion and extractor registries. Modules of
the registry's package are imported on first lookup, so adding an architecture or an extractor means
adding one file; nothing else lists names.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from models.base import AffectModel

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered by name; ``name_attr`` is set on each class to the name it was registered as."""

    def __init__(self, kind: str, package: str, *, skip: Iterable[str], name_attr: str) -> None:
        self.kind, self.package, self.skip, self.name_attr = kind, package, set(skip), name_attr
        self._classes: dict[str, type[T]] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def wrap(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} registered twice ({self._classes[name]}, {cls})")
            setattr(cls, self.name_attr, name)
            self._classes[name] = cls
            return cls

        return wrap

    def _discover(self) -> None:
        if self._discovered:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in self.skip and not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        self._discovered = True

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        self._discover()
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {sorted(self._classes)}")
        return self._classes[name]


MODELS: Registry[AffectModel] = Registry("model", "models", skip={"base", "registry", "fusion"},
                                         name_attr="registry_name")
register_model = MODELS.register
list_models = MODELS.names
get_model_class = MODELS.get


def get_model(name: str, *, dims: dict[str, int], n_classes: int, **cfg: Any) -> AffectModel:
    """Build a registered model from its typed config (unknown keys are an error)."""
    cls = get_model_class(name)
    return cls(cls.Config(**cfg), dims=dims, n_classes=n_classes)
