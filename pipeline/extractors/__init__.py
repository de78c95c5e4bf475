"""Feature extractors, one registry: ``@register_extractor("egemaps")`` / ``get_extractor("egemaps", **cfg)``."""

from pipeline.extractors.base import Extracted, Extractor, MediaItem, TimedFeatures
from pipeline.extractors.registry import get_extractor, list_extractors, register_extractor

__all__ = ["Extracted", "Extractor", "MediaItem", "TimedFeatures", "get_extractor", "list_extractors", "register_extractor"]
