"""The extractor registry: modules under ``pipeline/extractors/`` are discovered on first lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.registry import Registry

if TYPE_CHECKING:
    from pipeline.extractors.base import Extractor

EXTRACTORS: Registry[Extractor] = Registry("extractor", "pipeline.extractors", skip={"base", "registry"},
                                           name_attr="name")
register_extractor = EXTRACTORS.register
list_extractors = EXTRACTORS.names
get_extractor_class = EXTRACTORS.get


def get_extractor(name: str, **cfg: Any) -> Extractor:
    cls = get_extractor_class(name)
    return cls(cls.Config(**cfg))
