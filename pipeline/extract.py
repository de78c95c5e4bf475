"""Extraction of one item: its media -> every configured extractor -> alignment onto its segments.

``extract_item(item, cfg)`` is pure and per video: it opens the media lazily (decoded at most once,
``pipeline.media``), runs each extractor, pools its timed output onto the segments with SDK semantics
(``pipeline.align``), and returns an :class:`ItemResult` (plain arrays/DataFrames: picklable and
storable by ``pipeline.payload``). A modality that cannot be computed is *missing* (NaN + ``present``
False) with a quarantine record giving the precise reason; never zeros. A segment that ends beyond the
media is quarantined for every modality. The corpus driver (CLI and Prefect flow alike) is
``pipeline.engine``; writing the feature sets is ``pipeline.assemble``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from models.modalities import MODALITIES
from pipeline.align import align_to_segments, clip_to_segments
from pipeline.errors import ItemError
from pipeline.extractors.base import Extractor, MediaItem
from pipeline.extractors.registry import get_extractor_class, list_extractors
from pipeline.media import MediaConfig, media_config, open_media, segment_bounds
from pipeline.provenance import StageConfig, hash_file, hash_json

QUARANTINE_COLUMNS = ["item_id", "segment_id", "modality", "stage", "reason"]
# Preferred default extractor per modality, first registered wins (audio/visual come from other modules).
_DEFAULTS = {"text": ["glove"], "audio": ["egemaps", "opensmile"], "video": ["facet"]}


class ExtractorSpec(StageConfig):
    """One extractor in the run: its registered name, its config, the store column it fills."""

    name: str
    config: dict = {}
    column: str | None = Field(None, description="store column; default = the modality for the first extractor")
    keep_sequence: bool = Field(False, description="also keep the clipped per-segment sequence (<fs>.seq)")


def _default(modality: str) -> list[ExtractorSpec]:
    have = set(list_extractors())
    for name in _DEFAULTS[modality]:
        if name in have:
            return [ExtractorSpec(name=name, keep_sequence=modality == "text")]
    return []


class ExtractConfig(MediaConfig):
    """What to extract and how: extractors per modality (+ their configs), decoding (the
    :class:`MediaConfig` fields, declared there once) and pooling."""

    what: ClassVar[str] = "extraction config"

    text: list[ExtractorSpec] = Field(default_factory=lambda: _default("text"))
    audio: list[ExtractorSpec] = Field(default_factory=lambda: _default("audio"))
    video: list[ExtractorSpec] = Field(default_factory=lambda: _default("video"))
    collapse: Literal["mean", "weighted_mean", "max", "min", "std"] = "mean"
    word_level: bool = Field(False, description="also align audio/visual onto the words of the first text column "
                             "(SDK semantics) -> '<column>_words' sequences in <feature_set>.seq, one row per word")

    @model_validator(mode="after")
    def _check(self) -> ExtractConfig:
        cols = [c for _, s in self.specs() for c in [s.column]]
        dup = {c for c in cols if cols.count(c) > 1}
        if dup:
            raise ValueError(f"two extractors write the same column {sorted(dup)}")
        for m, s in self.specs():
            cls = get_extractor_class(s.name)  # unknown name -> KeyError listing the registered ones
            if cls.modality != m:
                raise ValueError(f"extractor {s.name!r} is a {cls.modality} extractor, listed under {m}")
            cls.Config(**s.config)  # validate now, not on the 1000th video
        return self

    def specs(self) -> list[tuple[str, ExtractorSpec]]:
        """(modality, spec) with every column filled: first per modality -> the modality's name."""
        out = []
        for m in MODALITIES:
            for i, s in enumerate(getattr(self, m)):
                col = s.column or (m if i == 0 else f"{m}_{s.name}")
                out.append((m, s if s.column == col else s.model_copy(update={"column": col})))
        return out


@dataclass
class ItemResult:
    """Aligned features of one item: one row per segment; NaN rows + ``present`` False = missing."""

    item_id: str
    segments: pd.DataFrame  # segment_id, segment_index, start, end (resolved), transcript, split, labels...
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # column -> [S, D] float32
    present: dict[str, np.ndarray] = field(default_factory=dict)  # column -> [S] bool
    sequences: dict[str, list] = field(default_factory=dict)  # column -> [S] of [T, D] arrays or None
    dim_names: dict[str, list] = field(default_factory=dict)
    quarantine: list = field(default_factory=list)  # dicts with QUARANTINE_COLUMNS
    media_seconds: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per column (+ "open")
    source_hash: str = ""
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. OOV counts per text column


def quarantine_record(item_id: str, stage: str, reason: str, modality: str | None = None,
                      segment_id: str | None = None) -> dict:
    """One row of the quarantine table (the only place its shape is written)."""
    return {"item_id": item_id, "segment_id": segment_id, "modality": modality, "stage": stage, "reason": reason}


# Media containers round their durations; a segment may end this far past the media and still be whole.
END_TOLERANCE_S = 0.1
_EXTRACTORS: dict[str, Extractor] = {}


def build_extractor(spec: ExtractorSpec) -> Extractor:
    """One instance per (name, config), shared by every thread: extractors keep no per-call state
    (``extract`` returns its notes and stats), so loading vectors or models happens once."""
    key = hash_json([spec.name, spec.config])
    if key not in _EXTRACTORS:
        cls = get_extractor_class(spec.name)
        _EXTRACTORS[key] = cls(cls.Config(**spec.config))
    return _EXTRACTORS[key]


def _resolve_times(item: MediaItem, duration: float | None) -> pd.DataFrame:
    """Segment start/end with NaN (= whole file) filled: [0, duration] (``media.segment_bounds``, the one
    rule), or [i, i+1] with no media."""
    seg = item.segments.reset_index(drop=True).copy()
    if duration is not None:
        seg[["start", "end"]] = segment_bounds(seg, (0.0, float(duration)))
        return seg
    untimed = (seg["start"].isna() | seg["end"].isna()).to_numpy()
    i = np.flatnonzero(untimed).astype(np.float64)  # transcript-only: a pseudo-interval per segment,
    seg.loc[untimed, "start"], seg.loc[untimed, "end"] = i, i + 1  # so its words stay its own
    return seg


def _beyond_media(seg: pd.DataFrame, duration: float | None) -> dict[str, str]:
    """segment_id -> reason, for segments that end beyond the media (known only once it is probed)."""
    if duration is None:
        return {}
    late = seg["end"].to_numpy(np.float64) > duration + END_TOLERANCE_S
    return {str(seg.at[i, "segment_id"]): f"segment [{seg.at[i, 'start']:.2f}, {seg.at[i, 'end']:.2f}] s ends beyond "
            f"the media ({duration:.2f} s)" for i in np.flatnonzero(late)}


def _open(item: MediaItem, cfg: ExtractConfig) -> tuple[Any, str | None]:
    """The item's lazy media source, or None and why."""
    if item.path is None:
        return None, "no media file (transcript-only row)"
    try:
        return open_media(item.path, media_config(cfg), item=item.item_id), None
    except ItemError as e:
        return None, str(e)


def _unavailable(needs: str, media: Any, why_no_media: str | None) -> str | None:
    """Precise reason an extractor cannot run on this item, checked before calling it."""
    if needs == "text":
        return None
    if media is None:
        return why_no_media
    if needs == "audio" and not getattr(media, "has_audio", True):
        return "no audio stream in the file"
    if needs == "frames" and not getattr(media, "has_video", True):
        return "no video stream in the file"
    return None


def extract_item(item: MediaItem, cfg: ExtractConfig | None = None) -> ItemResult:
    """All configured features of one item, aligned to its segments (see the module docstring)."""
    cfg = cfg or ExtractConfig()
    t0 = time.perf_counter()
    specs = cfg.specs()
    media, why = _open(item, cfg)  # lazy: only probes; gives the duration even for text-only runs
    duration = float(media.duration) if media is not None else None
    seg = _resolve_times(item, duration)
    iv = seg[["start", "end"]].to_numpy(np.float64)
    ids = seg["segment_id"].astype(str).tolist()
    src = {"media": hash_file(item.path) if item.path is not None else None,
           "segments": seg[["segment_id", "start", "end", "transcript"]].astype(str).values.tolist(),
           "words": None if item.words is None else item.words.astype(str).values.tolist()}
    res = ItemResult(item.item_id, seg, media_seconds=duration or 0.0, source_hash=hash_json(src))
    res.seconds["open"] = time.perf_counter() - t0
    beyond = _beyond_media(seg, duration)
    res.quarantine += [quarantine_record(item.item_id, "segments", r, None, sid) for sid, r in beyond.items()]
    outside = np.array([sid in beyond for sid in ids], bool)
    timed_item = MediaItem(item.item_id, item.path, seg, item.words)
    words: list[np.ndarray | None] | None = None  # per segment: word intervals of the first text column
    for modality, spec in specs:
        col, t1 = spec.column, time.perf_counter()
        ext = build_extractor(spec)
        reason = _unavailable(ext.needs, media, why)
        if reason is None and ext.needs == "text" and not any(seg["transcript"].map(_has_text)):
            reason = "no transcript for any segment"
        if reason is not None:
            res.quarantine.append(quarantine_record(item.item_id, spec.name, reason, modality))
            continue
        try:
            out = ext.extract(timed_item, media)
        except ItemError as e:
            res.quarantine.append(quarantine_record(item.item_id, spec.name, str(e), modality))
            continue
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad item must not stop the corpus; the reason is kept
            res.quarantine.append(quarantine_record(item.item_id, spec.name, f"unexpected {type(e).__name__}: {e}",
                                                    modality))
            continue
        timed = out.features
        al = align_to_segments(timed, iv, cfg.collapse)
        present = al.present & ~outside  # a segment beyond the media is quarantined above, for every column
        res.vectors[col], res.present[col] = al.values, present
        res.dim_names[col] = timed.dim_names
        for i in np.flatnonzero(~al.present & ~outside):
            r = out.notes.get(ids[i]) or (f"no {modality} features overlap the segment "
                                      f"[{iv[i, 0]:.2f}, {iv[i, 1]:.2f}] s ({len(timed.intervals)} timed rows in the item)")
            res.quarantine.append(quarantine_record(item.item_id, spec.name, r, modality, ids[i]))
        if spec.keep_sequence or (cfg.word_level and modality == "text" and words is None):
            pieces = clip_to_segments(timed, iv)
            if spec.keep_sequence:
                res.sequences[col] = [None if p is None else p.values for p in pieces]
            if modality == "text" and words is None:
                words = [None if p is None else p.intervals for p in pieces]
        if cfg.word_level and modality != "text" and words is not None:
            res.sequences[f"{col}_words"] = _word_level(timed, words, ids, item.item_id, modality, spec.name, res)
        if out.stats:
            res.notes[col] = dict(out.stats)
        res.seconds[col] = time.perf_counter() - t1
    return res


def _word_level(timed, words: list, ids: list[str], item_id: str, modality: str, stage: str, res: ItemResult) -> list:
    """One vector per word of each segment (SDK alignment onto the word intervals). A segment where some
    word has no overlapping feature is missing as a whole (a sequence cannot hold holes), with the count."""
    out: list[np.ndarray | None] = []
    for sid, w in zip(ids, words, strict=True):
        if w is None:
            out.append(None)
            continue
        al = align_to_segments(timed, w)
        if not al.present.all():
            res.quarantine.append(quarantine_record(
                item_id, f"{stage}/words", f"{int((~al.present).sum())} of {len(w)} words have no {modality} features",
                modality, sid))
            out.append(None)
        else:
            out.append(al.values)
    return out


def _has_text(t: Any) -> bool:
    return isinstance(t, str) and bool(t.strip())


# ------------------------------------------------------------------------------------------ config


def prepare_config(cfg: ExtractConfig, corpus: Any, workdir: Path) -> ExtractConfig:
    """Extractors that need the whole corpus first (word2vec trained on it) get a concrete config."""
    updates = {}
    for m in MODALITIES:
        specs = []
        for s in getattr(cfg, m):
            ext = build_extractor(s)
            ready = ext.prepare(corpus, workdir)
            if ready is not ext:
                s = s.model_copy(update={"config": ready.cfg.model_dump(mode="json", exclude_defaults=True)})
            specs.append(s)
        updates[m] = specs
    return ExtractConfig(**{**cfg.model_dump(), **{m: [s.model_dump() for s in v] for m, v in updates.items()}})


def load_config(path: str | Path | None) -> ExtractConfig:
    """An ExtractConfig from a JSON/YAML/TOML file (or the defaults)."""
    return ExtractConfig() if path is None else ExtractConfig.from_file(path)
