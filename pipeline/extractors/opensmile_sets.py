"""openSMILE feature sets through the ``opensmile`` package, on the waveform ``pipeline/media.py`` decoded.

``process_signal`` on our own decoded samples (no ``mediainfo`` binary, no second decode). Two levels:

- ``functionals``: one vector per segment, computed on that segment's samples only; the output interval
  is the segment's bounds (clipped to the audio), so alignment maps it back 1:1.
- ``lld`` / ``lld_deltas``: the frame sequence (10 ms hop) with openSMILE's own frame intervals, computed
  once per disjoint piece of audio the segments cover.

Segments with no audio under them (outside the audio stream, or too short for openSMILE, whose
functionals are NaN below ~0.1 s) are left out, so they come out *missing* after alignment, never zeros.
Dimension names are openSMILE's column names.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from pipeline.errors import ItemError
from pipeline.extractors.base import Extracted, Extractor, MediaItem, MediaSource, TimedFeatures
from pipeline.extractors.registry import register_extractor
from pipeline.media import item_audio, merge_windows, segment_windows
from pipeline.provenance import StageConfig

FeatureSetName = Literal[
    "eGeMAPSv02", "eGeMAPSv01b", "GeMAPSv01b", "ComParE_2016", "emobase", "IS09", "IS10", "IS11", "IS12", "IS13",
]
Level = Literal["functionals", "lld", "lld_deltas"]
_LEVELS = {"functionals": "Functionals", "lld": "LowLevelDescriptors", "lld_deltas": "LowLevelDescriptors_Deltas"}
# openSMILE's configs for these sets only define LLDs and functionals (no delta level).
_NO_DELTAS = {"eGeMAPSv02", "eGeMAPSv01b", "GeMAPSv01b"}

# Smile objects load the C library and parse a config (0.1-0.7 s): built once per thread and config
# (nothing documents a Smile as safe to share between threads); thread-local, so they go with the thread.
_SMILES = threading.local()


def _skip_distribution_scan() -> None:
    """``Smile()`` records its own class key through ``audobject``, which, to learn that the module
    ``opensmile`` comes from the distribution ``opensmile``, scans every installed distribution's
    metadata (``importlib.metadata.packages_distributions``): 1.5 s of CPU per process, measured, more
    than openSMILE's own work on a minute of audio. Seeding audobject's cache with that one fact gives
    the same key without the scan."""
    try:
        from audobject.core import utils
    except ImportError:  # pragma: no cover - a future audobject without this cache: the scan just runs
        return
    cache = getattr(utils, "PACKAGES_DISTRIBUTIONS", None)
    if isinstance(cache, dict):
        cache.setdefault("opensmile", ["opensmile"])


def smile_for(feature_set: str, level: str):  # noqa: ANN201 - opensmile.Smile
    import opensmile

    cache = _SMILES.__dict__.setdefault("by_config", {})
    if (feature_set, level) not in cache:
        _skip_distribution_scan()
        cache[(feature_set, level)] = opensmile.Smile(
            feature_set=opensmile.FeatureSet[feature_set], feature_level=opensmile.FeatureLevel[_LEVELS[level]],
        )
    return cache[(feature_set, level)]


def _segment_ids(item: MediaItem) -> np.ndarray:
    seg = item.segments
    if seg is None or len(seg) == 0 or "segment_id" not in seg:
        return np.array([item.item_id] * max(1, 0 if seg is None else len(seg)), dtype=object)
    return seg["segment_id"].astype(str).to_numpy(dtype=object)


class OpenSmileConfig(StageConfig):
    feature_set: FeatureSetName = "eGeMAPSv02"
    level: Level = "functionals"
    min_segment_s: float = Field(0.1, ge=0.0, description="shorter segments are left out (missing)")

    def model_post_init(self, __context: Any) -> None:
        if self.level == "lld_deltas" and self.feature_set in _NO_DELTAS:
            raise ValueError(f"openSMILE's {self.feature_set} has no delta level; use level 'lld' or 'functionals'")


@register_extractor("opensmile")
class OpenSmileExtractor(Extractor):
    """Any openSMILE set and level; the named subclasses below only change the default set."""

    modality: ClassVar = "audio"
    needs: ClassVar = "audio"
    Config: ClassVar[type[StageConfig]] = OpenSmileConfig

    @property
    def feature_name(self) -> str:
        cfg: OpenSmileConfig = self.cfg  # type: ignore[assignment]
        base = self.name if self.name != "opensmile" else f"opensmile_{cfg.feature_set.lower()}"
        return base if cfg.level == "functionals" else f"{base}_{cfg.level}"

    def dim_names(self) -> list[str]:
        cfg: OpenSmileConfig = self.cfg  # type: ignore[assignment]
        return list(smile_for(cfg.feature_set, cfg.level).feature_names)

    def extract(self, item: MediaItem, media: MediaSource | None) -> Extracted:
        cfg: OpenSmileConfig = self.cfg  # type: ignore[assignment]
        wave, sr, span = item_audio(item, media, stage=self.name)
        smile = smile_for(cfg.feature_set, cfg.level)
        windows, usable, notes = segment_windows(item.segments, span, cfg.min_segment_s)
        if cfg.level == "functionals":
            intervals, values, bad = self._functionals(smile, wave, sr, windows[usable])
            ids = _segment_ids(item)[usable]
            for k in bad:
                notes[ids[k]] = "openSMILE functionals are NaN (segment too short to analyse)"
        else:
            intervals, values = self._lld(smile, wave, sr, merge_windows(windows[usable]))
        if len(values) == 0:
            raise ItemError(
                f"no segment has at least {cfg.min_segment_s} s of audio (audio spans "
                f"{span[0]:.2f}-{span[1]:.2f} s)", item=item.item_id, stage=self.name, modality="audio",
            )
        return Extracted(TimedFeatures(intervals, values, list(smile.feature_names)), notes)

    @staticmethod
    def _functionals(smile, wave: np.ndarray, sr: int, windows: np.ndarray  # noqa: ANN001
                     ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        rows, keep, bad = [], [], []
        for k, (s, e) in enumerate(windows):
            piece = wave[int(round(s * sr)): int(round(e * sr))]
            v = smile.process_signal(piece, sr).to_numpy(np.float32).reshape(-1)
            if np.isfinite(v).all():  # openSMILE answers NaN when a piece is too short to analyse
                rows.append(v)
                keep.append(k)
            else:
                bad.append(k)
        n = len(smile.feature_names)
        return windows[keep].reshape(-1, 2), (np.stack(rows) if rows else np.zeros((0, n), np.float32)), bad

    @staticmethod
    def _lld(smile, wave: np.ndarray, sr: int, pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        ivs, vals = [], []
        for s, e in pieces:
            df = smile.process_signal(wave[int(round(s * sr)): int(round(e * sr))], sr)
            starts = df.index.get_level_values("start").total_seconds().to_numpy()
            ends = df.index.get_level_values("end").total_seconds().to_numpy()
            v = df.to_numpy(np.float32)
            ok = np.isfinite(v).all(axis=1) & (ends > starts)
            ivs.append(np.stack([starts[ok] + s, np.minimum(ends[ok] + s, e)], axis=1))
            vals.append(v[ok])
        n = len(smile.feature_names)
        if not ivs:
            return np.zeros((0, 2)), np.zeros((0, n), np.float32)
        return np.concatenate(ivs), np.concatenate(vals)


def _named(name: str, feature_set: str, doc: str) -> type[OpenSmileExtractor]:
    """A registered extractor whose config defaults to one feature set (``egemaps``, ``compare2016``, ...)."""
    cfg_cls = type(
        f"{name.capitalize()}Config", (OpenSmileConfig,),
        {"__annotations__": {"feature_set": FeatureSetName}, "feature_set": feature_set, "__module__": __name__},
    )
    cls = type(f"{name.capitalize()}Extractor", (OpenSmileExtractor,),
               {"Config": cfg_cls, "__doc__": doc, "__module__": __name__})
    return register_extractor(name)(cls)


EGeMAPS = _named("egemaps", "eGeMAPSv02", "eGeMAPS v02: 88 functionals / 25 LLDs (Eyben et al. 2016).")
GeMAPS = _named("gemaps", "GeMAPSv01b", "GeMAPS v01b: 62 functionals / 18 LLDs.")
ComParE2016 = _named("compare2016", "ComParE_2016", "ComParE 2016: 6373 functionals / 65 LLDs (+65 deltas).")
Emobase = _named("emobase", "emobase", "emobase: 988 functionals / 26 LLDs (+26 deltas).")
IS09 = _named("is09", "IS09", "INTERSPEECH 2009 emotion challenge: 384 functionals / 16 LLDs (+16 deltas).")
