"""The extraction driver: corpus items -> every configured extractor -> alignment -> one feature set.

* ``extract_item(item, cfg)`` is pure and per video: it opens the media lazily (decoded at most once,
  ``pipeline.media``), runs each extractor, pools its timed output onto the segments with SDK semantics
  (``pipeline.align``), and returns an :class:`ItemResult` (plain arrays/DataFrames: picklable and
  storable by ``pipeline.payload`` for Prefect caching). A modality that cannot be computed is *missing*
  (NaN + ``present`` False) with a quarantine record giving the precise reason; never zeros.
* ``write_extracted(results, ...)`` writes one feature set (vector per segment per column) with full
  metadata, a companion ``<feature_set>.seq`` set with the kept sequences (word vectors for the text-CNN
  and word-level alignment), and the quarantine table ``<dataset>/_quarantine/<feature_set>.parquet``.
* ``extract_corpus(...)`` runs it all in one process with a progress bar per stage and a summary
  (done / quarantined / seconds of media / realtime factor). Memory is bounded by one item at a time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from pipeline.align import align_to_segments, clip_to_segments
from pipeline.errors import InputError, ItemError, StoreError
from pipeline.extractors.base import Extractor, MediaItem
from pipeline.extractors.registry import get_extractor_class, list_extractors
from pipeline.media import MediaConfig, media_config, open_media
from pipeline.provenance import StageConfig, hash_file, hash_json
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_atomic, write_feature_set

MODALITIES = ("text", "audio", "video")
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


def _q(item: str, segment: str | None, modality: str, stage: str, reason: str) -> dict:
    return {"item_id": item, "segment_id": segment, "modality": modality, "stage": stage, "reason": reason}


_EXTRACTORS: dict[str, Extractor] = {}


def build_extractor(spec: ExtractorSpec) -> Extractor:
    """One instance per (name, config) per thread: loading happens once, and per-call state
    (``segment_notes``, ``stats``) is never shared between two threads of a task runner."""
    key = hash_json([spec.name, spec.config, threading.get_ident()])
    if key not in _EXTRACTORS:
        cls = get_extractor_class(spec.name)
        _EXTRACTORS[key] = cls(cls.Config(**spec.config))
    return _EXTRACTORS[key]


def _resolve_times(item: MediaItem, duration: float | None) -> pd.DataFrame:
    """Segment start/end with NaN (= whole file) filled: [0, duration], or [i, i+1] with no media."""
    seg = item.segments.reset_index(drop=True).copy()
    for i in range(len(seg)):
        if pd.isna(seg.at[i, "start"]) or pd.isna(seg.at[i, "end"]):
            if duration is not None:
                seg.at[i, "start"], seg.at[i, "end"] = 0.0, float(duration)
            else:  # transcript-only, untimed: a pseudo-interval per segment so its words stay its own
                seg.at[i, "start"], seg.at[i, "end"] = float(i), float(i + 1)
    return seg


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
    timed_item = MediaItem(item.item_id, item.path, seg, item.words)
    words: list[np.ndarray | None] | None = None  # per segment: word intervals of the first text column
    for modality, spec in specs:
        col, t1 = spec.column, time.perf_counter()
        ext = build_extractor(spec)
        reason = _unavailable(ext.needs, media, why)
        if reason is None and ext.needs == "text" and not any(seg["transcript"].map(_has_text)):
            reason = "no transcript for any segment"
        if reason is not None:
            res.quarantine.append(_q(item.item_id, None, modality, spec.name, reason))
            continue
        try:
            timed = ext.extract(timed_item, media)
        except ItemError as e:
            res.quarantine.append(_q(item.item_id, None, modality, spec.name, str(e)))
            continue
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad item must not stop the corpus; the reason is kept
            res.quarantine.append(_q(item.item_id, None, modality, spec.name, f"unexpected {type(e).__name__}: {e}"))
            continue
        al = align_to_segments(timed, iv, cfg.collapse)
        res.vectors[col], res.present[col] = al.values, al.present
        res.dim_names[col] = timed.dim_names
        notes = getattr(ext, "segment_notes", {})
        for i in np.flatnonzero(~al.present):
            r = notes.get(ids[i]) or (f"no {modality} features overlap the segment "
                                      f"[{iv[i, 0]:.2f}, {iv[i, 1]:.2f}] s ({len(timed.intervals)} timed rows in the item)")
            res.quarantine.append(_q(item.item_id, ids[i], modality, spec.name, r))
        if spec.keep_sequence or (cfg.word_level and modality == "text" and words is None):
            pieces = clip_to_segments(timed, iv)
            if spec.keep_sequence:
                res.sequences[col] = [None if p is None else p.values for p in pieces]
            if modality == "text" and words is None:
                words = [None if p is None else p.intervals for p in pieces]
        if cfg.word_level and modality != "text" and words is not None:
            res.sequences[f"{col}_words"] = _word_level(timed, words, ids, item.item_id, modality, spec.name, res)
        if hasattr(ext, "stats"):
            res.notes[col] = dict(ext.stats)
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
            res.quarantine.append(_q(item_id, sid, modality, f"{stage}/words",
                                     f"{int((~al.present).sum())} of {len(w)} words have no {modality} features"))
            out.append(None)
        else:
            out.append(al.values)
    return out


def _has_text(t: Any) -> bool:
    return isinstance(t, str) and bool(t.strip())


# --------------------------------------------------------------------------------------------- write


def _extractor_provenance(cfg: ExtractConfig) -> dict:
    out = {}
    for _, spec in cfg.specs():
        ext = build_extractor(spec)
        cls = type(ext)
        entry = {"extractor": spec.name, "class": f"{cls.__module__}:{cls.__qualname__}",
                 "config": ext.cfg.model_dump(mode="json"), "config_hash": ext.cfg.config_hash()}
        if hasattr(ext, "provenance"):
            try:
                entry.update(ext.provenance())
            except Exception as e:  # noqa: BLE001 - provenance is best effort, never fails a write
                entry["provenance_error"] = str(e)
        out[spec.column] = entry
    return out


def _columns(results: list[ItemResult], kind: str) -> dict[str, int]:
    dims: dict[str, int] = {}
    for r in results:
        src = r.vectors if kind == "vector" else r.sequences
        for col, v in src.items():
            d = (v.shape[1] if kind == "vector" else next((s.shape[1] for s in v if s is not None), None))
            if d is None:
                continue
            if dims.setdefault(col, d) != d:
                raise StoreError(f"column {col!r}: dimension {d} in item {r.item_id}, {dims[col]} elsewhere")
    return dims


def _segment_table(results: list[ItemResult]) -> tuple[pd.DataFrame, list[str] | None]:
    parts = []
    for r in results:
        s = r.segments.copy()
        s["video_id"] = r.item_id
        parts.append(s)
    seg = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    names = None
    if "label" in seg.columns and seg["label"].notna().any():  # class labels renumbered over the corpus
        names = sorted(seg["label"].dropna().astype(str).unique())
        seg["label_class"] = seg["label"].map({n: i for i, n in enumerate(names)})
    for c in ("split", "label_bin", "label_class", "score", "transcript"):
        if c not in seg.columns:
            seg[c] = "train" if c == "split" else None
    return seg, names


def write_extracted(
    results: list[ItemResult], *, store: str | Path, dataset: str, feature_set: str = "extracted",
    cfg: ExtractConfig | None = None, extra: dict | None = None,
) -> Path:
    """One feature set (vectors) + ``<feature_set>.seq`` (kept sequences) + the quarantine table."""
    cfg = cfg or ExtractConfig()
    if not results:
        raise InputError("no extracted item to write")
    seg, label_names = _segment_table(results)
    n = len(seg)
    offsets = np.cumsum([0] + [len(r.segments) for r in results])
    prov = _extractor_provenance(cfg)
    modality_of = {s.column: m for m, s in cfg.specs()}
    source_hash = hash_json([r.source_hash for r in results])
    base_extra = {"extractors": prov, "n_items": len(results), "media_seconds": sum(r.media_seconds for r in results),
                  "oov": {c: _sum_notes(results, c) for c in prov if any(c in r.notes for r in results)},
                  **(extra or {})}
    producer = Producer.of("extractor", "extract", cfg.model_dump(mode="json"))

    def spec_of(col: str, kind: str, dim: int) -> ModalitySpec:
        names = next((r.dim_names.get(col) for r in results if r.dim_names.get(col)), None)
        p = prov.get(col, {})
        desc = f"{p.get('extractor', col)} ({modality_of.get(col, '?')}), pooled by {cfg.collapse}" if kind == "vector" \
            else f"{p.get('extractor', col)} ({modality_of.get(col, '?')}) sequence clipped to the segment"
        return ModalitySpec(kind=kind, dim=dim, dim_names=names if names and len(names) == dim else None, description=desc)

    vec_dims = _columns(results, "vector")
    feats: dict[str, Any] = {}
    missing: dict[str, np.ndarray] = {}
    for col, d in vec_dims.items():
        arr, miss = np.full((n, d), np.nan, np.float32), np.ones(n, bool)
        for r, o in zip(results, offsets, strict=False):
            if col in r.vectors:
                arr[o : o + len(r.segments)] = r.vectors[col]
                miss[o : o + len(r.segments)] = ~r.present[col]
        feats[col], missing[col] = np.where(miss[:, None], 0.0, arr).astype(np.float32), miss
    if not feats:
        raise InputError("no feature column was produced for any item (see the quarantine table)")
    not_produced = [s.column for _, s in cfg.specs() if s.column not in vec_dims]
    meta = make_meta(dataset=dataset, feature_set=feature_set,
                     modalities={c: spec_of(c, "vector", d) for c, d in vec_dims.items()}, producer=producer,
                     source_hash=source_hash, label_names=label_names,
                     extra={**base_extra, "columns_never_produced": not_produced})
    path = write_feature_set(store, FeatureSet(meta, seg, feats, missing), origin=f"extract:{dataset}")
    seq_dims = _columns(results, "sequence")
    if seq_dims:
        seqs = {c: [] for c in seq_dims}
        for r in results:
            for c in seq_dims:
                seqs[c] += r.sequences.get(c, [None] * len(r.segments))
        smeta = make_meta(dataset=dataset, feature_set=f"{feature_set}.seq",
                          modalities={c: spec_of(c, "sequence", d) for c, d in seq_dims.items()}, producer=producer,
                          source_hash=source_hash, label_names=label_names,
                          lineage=[f"{dataset}/{feature_set}@{source_hash}"], extra=base_extra)
        write_feature_set(store, FeatureSet(smeta, seg, seqs), origin=f"extract:{dataset}")
    write_quarantine(store, dataset, feature_set, [q for r in results for q in r.quarantine])
    return path


def _sum_notes(results: list[ItemResult], col: str) -> dict:
    tot: dict[str, int] = {}
    for r in results:
        for k, v in r.notes.get(col, {}).items():
            tot[k] = tot.get(k, 0) + int(v)
    return tot


def quarantine_path(store: str | Path, dataset: str, feature_set: str) -> Path:
    return Path(store) / dataset / "_quarantine" / f"{feature_set}.parquet"


def write_quarantine(store: str | Path, dataset: str, feature_set: str, records: list[dict]) -> Path:
    """The quarantine table of one extraction run (rewritten whole, atomically; empty = nothing quarantined)."""
    df = pd.DataFrame(records, columns=QUARANTINE_COLUMNS).astype(object)
    table = pa.Table.from_pandas(df.where(df.notna(), None), preserve_index=False,
                                 schema=pa.schema([(c, pa.string()) for c in QUARANTINE_COLUMNS]))
    return write_atomic(table, quarantine_path(store, dataset, feature_set))


# ------------------------------------------------------------------------------------------ corpus run


class ExtractSummary(BaseModel):
    dataset: str
    feature_set: str
    path: str
    n_items: int
    n_segments: int
    items_done: int  # items with at least one modality extracted
    items_quarantined: int  # items with at least one quarantine record
    n_quarantine_records: int
    media_seconds: float
    wall_seconds: float
    realtime_factor: float  # seconds of media per second of wall time (this run, whole process)
    seconds_per_column: dict[str, float]
    present_per_column: dict[str, int]  # segments with features, per column
    reasons: dict[str, int]

    def format(self) -> str:
        lines = [
            f"{self.dataset}/{self.feature_set}: {self.items_done}/{self.n_items} items done, "
            f"{self.items_quarantined} with quarantine records ({self.n_quarantine_records} records), "
            f"{self.n_segments} segments",
            (f"media {self.media_seconds:.1f} s in {self.wall_seconds:.1f} s wall = {self.realtime_factor:.1f}x realtime"
             if self.media_seconds else f"no media (transcripts only), {self.wall_seconds:.1f} s wall"),
        ]
        for c, s in self.seconds_per_column.items():
            have = f"   {self.present_per_column[c]}/{self.n_segments} segments present" if c in self.present_per_column else ""
            lines.append(f"  {c:<14} {s:7.2f} s{have}")
        for r, k in list(self.reasons.items())[:8]:
            lines.append(f"  quarantined x{k}: {r}")
        lines.append(f"written: {self.path}")
        return "\n".join(lines)


def prepare_config(cfg: ExtractConfig, corpus: Any, workdir: Path) -> ExtractConfig:
    """Extractors that need the whole corpus first (word2vec trained on it) get a concrete config."""
    updates = {}
    for m in MODALITIES:
        specs = []
        for s in getattr(cfg, m):
            ext = build_extractor(s)
            if hasattr(ext, "prepare"):
                ready = ext.prepare(corpus, workdir)
                s = s.model_copy(update={"config": ready.cfg.model_dump(mode="json", exclude_defaults=True)})
            specs.append(s)
        updates[m] = specs
    return ExtractConfig(**{**cfg.model_dump(), **{m: [s.model_dump() for s in v] for m, v in updates.items()}})


def load_config(path: str | Path | None) -> ExtractConfig:
    """An ExtractConfig from a JSON/YAML/TOML file (or the defaults)."""
    if path is None:
        return ExtractConfig()
    p = Path(path)
    if not p.is_file():
        raise InputError("config file not found", path=p)
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        return ExtractConfig(**(data or {}))
    except Exception as e:  # noqa: BLE001 - bad config = one clear line
        raise InputError(f"invalid extraction config: {e}", path=p) from e


def default_workers() -> int:
    """One extraction process per core this process may run on (extractors are single-threaded)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def extract_corpus(
    corpus_path: str | Path, *, store: str | Path, dataset: str, cfg: ExtractConfig | None = None,
    feature_set: str = "extracted", progress: bool = True, default_split: str = "train", workers: int | None = None,
) -> ExtractSummary:
    """Extract every item of a corpus into ``store/dataset/feature_set``, item by item (``workers`` > 1:
    that many spawned processes, each holding one item at a time; results are gathered in corpus order;
    None = one per core available to this process)."""
    from tqdm import tqdm

    from pipeline.corpus import load_corpus

    t0 = time.perf_counter()
    corpus = load_corpus(corpus_path, default_split=default_split)
    cfg = prepare_config(cfg or ExtractConfig(), corpus, Path(store) / dataset / "_models")
    cols = [s.column for _, s in cfg.specs()]
    bars = {c: tqdm(total=len(corpus.items), desc=f"{c:<12}", unit="item", disable=not progress, position=i,
                    leave=True) for i, c in enumerate(["items", *cols])}
    results: list[ItemResult] = []
    workers = default_workers() if workers is None else workers
    pool = None
    try:
        if workers > 1:  # one process per core: extractors are single-threaded; results keep corpus order
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            stream = pool.map(extract_item, corpus.items, [cfg] * len(corpus.items))
        else:
            stream = (extract_item(item, cfg) for item in corpus.items)
        for r in stream:
            results.append(r)
            for c in cols:
                bars[c].update(1)
                bars[c].set_postfix_str("ok" if c in r.vectors else "missing", refresh=False)
            bars["items"].update(1)
            bars["items"].set_postfix(media_s=f"{sum(x.media_seconds for x in results):.0f}", refresh=False)
    finally:
        for b in bars.values():
            b.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    path = write_extracted(results, store=store, dataset=dataset, feature_set=feature_set, cfg=cfg,
                           extra={"corpus": corpus.source})
    wall = time.perf_counter() - t0
    media_s = sum(r.media_seconds for r in results)
    recs = [q for r in results for q in r.quarantine]
    reasons: dict[str, int] = {}
    for q in recs:
        key = f"[{q['modality']}/{q['stage']}] {q['reason'].split(': ', 1)[-1] if q['reason'].startswith('[') else q['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    return ExtractSummary(
        dataset=dataset, feature_set=feature_set, path=str(path), n_items=len(results),
        n_segments=sum(len(r.segments) for r in results), items_done=sum(bool(r.vectors) for r in results),
        items_quarantined=sum(bool(r.quarantine) for r in results), n_quarantine_records=len(recs),
        media_seconds=media_s, wall_seconds=wall, realtime_factor=media_s / wall if wall > 0 else 0.0,
        seconds_per_column={c: sum(r.seconds.get(c, 0.0) for r in results) for c in ["open", *cols]},
        present_per_column={c: int(sum(r.present[c].sum() for r in results if c in r.present)) for c in cols},
        reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    )
