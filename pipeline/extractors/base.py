"""The extractor contract shared by text, audio and visual extractors.

An extractor turns one corpus item (a media file and its segments, or a transcript only) into a
*timed* feature sequence, CMU-MultimodalSDK style: ``intervals [T, 2]`` in seconds and ``values [T, D]``.
Frame-level extractors return one interval per frame/window, word-level ones one per word, and
utterance-level ones (e.g. openSMILE functionals) one per segment. Alignment (``pipeline/align.py``)
then pools any of them onto the segments. ``extract`` returns an :class:`Extracted`
(features, per-segment notes, stats) and keeps nothing on the instance. A per-item failure raises :class:`pipeline.errors.ItemError`
with a precise reason; the driver quarantines the item for that modality and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np
import pandas as pd

from pipeline.provenance import StageConfig

Modality = Literal["text", "audio", "video"]


@dataclass
class MediaItem:
    """One item of a corpus: a video (or audio) file plus its segments; ``path`` None = transcript only.

    ``segments`` has ``segment_id, segment_index, start, end, transcript`` (start/end in seconds of the
    file; NaN = whole file). ``words`` (optional) has ``word, start, end`` from a timing file.
    """

    item_id: str
    path: Path | None
    segments: pd.DataFrame
    words: pd.DataFrame | None = None


@dataclass
class TimedFeatures:
    intervals: np.ndarray  # [T, 2] float64 seconds
    values: np.ndarray  # [T, D] float32
    dim_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.intervals = np.asarray(self.intervals, np.float64).reshape(-1, 2)
        self.values = np.asarray(self.values, np.float32)
        if self.values.ndim != 2 or len(self.values) != len(self.intervals):
            raise ValueError(f"intervals {self.intervals.shape} and values {self.values.shape} do not match")


@dataclass
class Extracted:
    """What ``Extractor.extract`` returns: the timed features plus what the driver reports about them.

    A value, not instance state: one extractor instance is shared by every thread of a task runner."""

    features: TimedFeatures
    notes: dict[str, str] = field(default_factory=dict)  # segment_id -> why that segment has no features
    stats: dict[str, int] = field(default_factory=dict)  # counters summed over the corpus (e.g. tokens, oov)


class MediaSource(Protocol):
    """Decoded media of one item, decoded lazily and at most once (``pipeline/media.py``)."""

    def audio(self) -> tuple[np.ndarray, int]: ...  # mono float32 waveform, sample rate

    def frames(self) -> object: ...  # iterator of (time_s, RGB uint8 [H, W, 3]) at the configured fps


class Extractor(ABC):
    """Base: a typed ``Config``, a modality, what media it needs, and ``extract``."""

    name: ClassVar[str] = ""
    modality: ClassVar[Modality]
    needs: ClassVar[Literal["audio", "frames", "text"]]
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, cfg: StageConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else self.Config()

    @property
    def feature_name(self) -> str:
        """Name of the feature column this extractor produces (stable across configs)."""
        return self.name

    def prepare(self, corpus: object, workdir: Path) -> Extractor:  # noqa: ARG002 - used by word2vec
        """An extractor ready for the whole ``corpus`` (word2vec trains on it); most need nothing."""
        return self

    def provenance(self) -> dict:
        """What identifies the extractor's data beyond its config (e.g. the vectors file's digest)."""
        return {}

    @abstractmethod
    def extract(self, item: MediaItem, media: MediaSource | None) -> Extracted:
        """Features of one item with its per-segment notes and stats; raise ``ItemError`` (never return
        zeros) when it cannot be done. Must not keep per-call state on ``self``."""
