"""The corpus driver: the one engine behind ``affectflow extract`` (a process pool) and the Prefect flow
``extract-corpus`` (tasks with a cache and retries).

``extract_corpus(corpus, ..., mapper=...)``:

1. takes the dataset's writer lock (a second writer is refused), removes stale temp files, and checks
   write permission and free space before any work (``pipeline.store.dataset_writer``);
2. loads the corpus, validated against the segment schema before any media is decoded;
3. runs :func:`run_item` on every item through ``mapper`` (:func:`local_mapper` for the CLI; the flow
   passes one that submits Prefect tasks). Each item's result is written as soon as it finishes (an
   ``.npz`` payload plus a JSON record under ``<store>/.cache/<dataset>/payloads/``, keyed by the item's
   content, segments, config and code version), so a crash keeps what was done and a re-run resumes:
   items whose record is there are not redone;
4. writes the feature sets from the records and one payload at a time (``pipeline.assemble``), then the
   quarantine table, and (``text_cnn``) trains the text-CNN on the TRAIN labels.

Memory is bounded by one item in each worker and one item in the writer, whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline import payload
from pipeline.assemble import summarize, write_quarantine, write_streamed
from pipeline.atomic import write_text_atomic
from pipeline.errors import AffectflowError, InputError, ItemError, StoreError
from pipeline.extract import ExtractConfig, prepare_config, quarantine_record
from pipeline.extractors.base import MediaItem
from pipeline.logs import get_logger, progress_bar
from pipeline.provenance import StageConfig, hash_file, hash_json, library_versions
from pipeline.store import dataset_writer
from pipeline.writers import check_writable, remove_stale_temp_files

DEFAULT_ITEM_FN = "pipeline.extract:extract_item"
# Source whose change must invalidate cached items (relative to the project root).
EXTRACTION_CODE = (
    "pipeline/extract.py", "pipeline/engine.py", "pipeline/assemble.py", "pipeline/align.py", "pipeline/media.py", "pipeline/corpus.py", "pipeline/segments.py",
    "pipeline/text_cnn.py", "pipeline/visual_cnn.py", "pipeline/extractors/*.py", "models/textcnn.py", "models/c3d.py",
)
EXTRACTION_LIBRARIES = ("numpy", "torch", "opensmile", "librosa", "praat-parselmouth", "av",
                        "opencv-python-headless", "dlib-bin", "gensim")
# Test hook for the kill -9 tests, unset in normal use: "extract:N" = the driver kills itself with SIGKILL
# once N items are recorded; "write:N" = once N row groups of the feature set are written (a temp file
# is then on disk). Deterministic points, where a test with a timer would race.
KILL_AT_ENV = "AFFECTFLOW_KILL_AT"
log = get_logger("extract")
# Room a feature set needs per segment beyond its payload (rough upper bound, checked before the work).
BYTES_PER_SEGMENT = 64 << 10


class ExtractionFailed(AffectflowError):
    """Too many items failed (``max_error_rate``), or none produced a feature: nothing was written."""

    def __init__(self, message: str, summary: ExtractSummary) -> None:
        super().__init__(message)
        self.summary = summary


# ------------------------------------------------------------------------------------------ cache keys


def project_root() -> Path:
    import pipeline

    return Path(pipeline.__file__).resolve().parent.parent


def code_version(patterns: Iterable[str] = EXTRACTION_CODE, libraries: Iterable[str] = EXTRACTION_LIBRARIES) -> str:
    """Digest of the extraction source files that exist now, plus the versions of the libraries they use."""
    root = project_root()
    h = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    h.update(hash_json(library_versions(libraries)).encode())
    return h.hexdigest()[:16]


def item_key(item: Any, cfg: StageConfig, code: str) -> str:
    """Key of one item: its id + content digest + segments (+ word timings) + config hash + code version."""
    media = hash_file(item.path) if item.path is not None else "no-media"
    tables = [
        None if t is None else t.to_json(orient="split", date_format="iso", double_precision=15)
        for t in (item.segments, getattr(item, "words", None))
    ]
    return hash_json({"item": item.item_id, "media": media, "tables": tables, "config": cfg.config_hash(), "code": code})


def payload_dir(store: str | Path, dataset: str) -> Path:
    # Hidden under the store (its readers skip dot-names), next to the data it speeds up.
    return Path(store) / ".cache" / dataset / "payloads"


# ------------------------------------------------------------------------------------------ one item


def resolve(dotted: str) -> Callable[..., Any]:
    """``module:function`` -> the function (lets benches and tests swap the per-item function)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def run_item(item: MediaItem, cfg: ExtractConfig, key: str, pdir: str | Path, fn: str = DEFAULT_ITEM_FN) -> dict:
    """Extract one item and write its result (payload, then its JSON record: the record marks it done).

    A permanent ``ItemError``/``InputError`` for the whole item becomes a record with no payload and a
    quarantine row (the same bytes with the same config fail the same way); other errors propagate, so
    a task runner can retry them."""
    pdir = Path(pdir)
    try:
        result = resolve(fn)(item, cfg)
    except (ItemError, InputError) as e:
        q = quarantine_record(item.item_id, getattr(e, "stage", "extract"), str(e), getattr(e, "modality", None))
        record = {"item_id": item.item_id, "key": key, "payload": None, "n_segments": 0, "vectors": {},
                  "sequences": {}, "present": {}, "quarantine": [q]}
    else:
        path = payload.save(result, pdir / f"{key}.npz")
        record = {"key": key, "payload": path.name, **summarize(result)}
    write_text_atomic(pdir / f"{key}.json", json.dumps(record))
    return record


def done_record(pdir: Path, key: str) -> dict | None:
    """The record of an item finished by an earlier (possibly killed) run, if it and its payload exist."""
    try:
        record = json.loads((pdir / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("payload") and not (pdir / record["payload"]).is_file():
        return None
    return record


# ------------------------------------------------------------------------------------------ mappers


@dataclass
class Outcome:
    """One item's end: ``state`` Completed / Cached / Failed; a record unless it failed for good."""

    index: int
    state: str
    record: dict | None
    error: str | None = None


Mapper = Callable[[list[MediaItem], ExtractConfig, list[str], Path], Iterable[Outcome]]


def default_workers() -> int:
    """One extraction process per core this process may run on (every extractor is single-threaded)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def local_mapper(workers: int | None = None, fn: str = DEFAULT_ITEM_FN) -> Mapper:
    """Items already recorded are Cached; the others run here (``workers`` 1) or in that many spawned
    processes, each holding one item at a time; only the small records travel back. ``workers`` None:
    :func:`default_workers`."""
    workers = default_workers() if workers is None else workers

    def run(items: list[MediaItem], cfg: ExtractConfig, keys: list[str], pdir: Path) -> Iterator[Outcome]:
        todo = []
        for i, key in enumerate(keys):
            rec = done_record(pdir, key)
            if rec is not None:
                yield Outcome(i, "Cached", rec)
            else:
                todo.append(i)
        if workers <= 1:
            for i in todo:
                yield _guarded(i, lambda i=i: run_item(items[i], cfg, keys[i], pdir, fn))
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from pipeline.procs import die_with_parent

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(run_item, items[i], cfg, keys[i], pdir, fn): i for i in todo}
            for f in as_completed(futures):
                yield _guarded(futures[f], f.result)

    return run


def _guarded(index: int, call: Callable[[], dict]) -> Outcome:
    try:
        return Outcome(index, "Completed", call())
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - one item's crash is that item's failure, with its reason
        return Outcome(index, "Failed", None, f"{type(e).__name__}: {e}")


# ------------------------------------------------------------------------------------------ the run


class ExtractSummary(BaseModel):
    """The same summary from the CLI and the flow."""

    dataset: str
    feature_set: str
    path: str | None
    n_items: int
    n_segments: int
    n_computed: int  # items extracted in this run
    n_cached: int  # items finished by an earlier run (not redone)
    n_failed: int  # items with no feature at all (failed, or every column missing)
    n_failed_after_retries: int  # items whose extraction raised (after the runner's retries)
    failed_items: list[str]
    items_done: int  # items with at least one column
    items_quarantined: int  # items with at least one quarantine record
    n_quarantine_records: int
    error_rate: float
    media_seconds: float
    wall_seconds: float
    realtime_factor: float  # seconds of media per second of wall time (this run, whole process)
    seconds_per_column: dict[str, float]
    present_per_column: dict[str, int]  # segments with features, per column
    reasons: dict[str, int]
    text_cnn: dict | None = None

    def format(self) -> str:
        lines = [
            f"{self.dataset}/{self.feature_set}: {self.items_done}/{self.n_items} items done "
            f"({self.n_computed} extracted, {self.n_cached} from an earlier run), {self.items_quarantined} with "
            f"quarantine records ({self.n_quarantine_records} records), {self.n_segments} segments",
            (f"media {self.media_seconds:.1f} s in {self.wall_seconds:.1f} s wall = {self.realtime_factor:.1f}x realtime"
             if self.media_seconds else f"no media (transcripts only), {self.wall_seconds:.1f} s wall"),
        ]
        for c, s in self.seconds_per_column.items():
            have = f"   {self.present_per_column[c]}/{self.n_segments} segments present" if c in self.present_per_column else ""
            lines.append(f"  {c:<14} {s:7.2f} s{have}")
        lines += [f"  quarantined x{k}: {r}" for r, k in list(self.reasons.items())[:8]]
        lines.append(f"written: {self.path}")
        if self.text_cnn:
            lines.append(f"text-CNN: valid accuracy {self.text_cnn.get('valid_accuracy')}, written {self.text_cnn['path']}")
        return "\n".join(lines)


def _summary(outcomes: list[Outcome], items: list[MediaItem], cols: list[str], dataset: str, feature_set: str,
             wall: float) -> ExtractSummary:
    recs = [o.record for o in outcomes if o.record]
    errors = [o for o in outcomes if o.error]
    empty = [o for o in outcomes if o.record and not o.record["vectors"]]
    reasons = Counter(f"[extract] failed: {o.error}" for o in errors)
    reasons.update(f"[{q.get('modality') or '-'}/{q.get('stage') or '-'}] {q['reason']}" for r in recs for q in r["quarantine"])
    media_s = sum(r.get("media_seconds", 0.0) for r in recs)
    return ExtractSummary(
        dataset=dataset, feature_set=feature_set, path=None, n_items=len(items),
        n_segments=sum(r["n_segments"] for r in recs),
        n_computed=sum(o.state == "Completed" for o in outcomes), n_cached=sum(o.state == "Cached" for o in outcomes),
        n_failed=len(errors) + len(empty), n_failed_after_retries=len(errors),
        failed_items=[items[o.index].item_id for o in errors + empty],
        items_done=len(recs) - len(empty), items_quarantined=sum(bool(r["quarantine"]) for r in recs),
        n_quarantine_records=sum(len(r["quarantine"]) for r in recs),
        error_rate=(len(errors) + len(empty)) / max(1, len(items)), media_seconds=media_s, wall_seconds=wall,
        realtime_factor=media_s / wall if wall > 0 else 0.0,
        seconds_per_column={c: sum(r.get("seconds", {}).get(c, 0.0) for r in recs) for c in ["open", *cols]},
        present_per_column={c: sum(r["present"].get(c, 0) for r in recs) for c in cols},
        reasons=dict(reasons.most_common()),
    )


def log_outcome(o: Outcome, item_id: str) -> None:
    """One line per item: extracted / from an earlier run / failed, and every quarantine reason it carries."""
    if o.error:
        log.warning("video %s: failed: %s", item_id, o.error)
        return
    rec = o.record or {}
    if not rec.get("vectors"):
        log.warning("video %s: nothing extracted%s", item_id, " (from cache)" if o.state == "Cached" else "")
    else:
        log.info("video %s: %s, %d feature columns", item_id, "from cache" if o.state == "Cached" else "extracted",
                 len(rec["vectors"]))
    for q in rec.get("quarantine", []):
        log.warning("video %s: quarantined [%s/%s] %s", item_id, q.get("modality") or "-", q.get("stage") or "-",
                    q["reason"])


def _kill_hook(phase: str, n_done: int) -> None:
    at = os.environ.get(KILL_AT_ENV, "")
    if at.partition(":")[0] == phase and n_done >= int(at.partition(":")[2]):
        os.kill(os.getpid(), signal.SIGKILL)


def extract_corpus(
    corpus_path: str | Path, *, store: str | Path, dataset: str, cfg: ExtractConfig | None = None,
    feature_set: str = "extracted", default_split: str = "train", mapper: Mapper | None = None,
    max_error_rate: float = 1.0, text_cnn: bool = False, extra: dict | None = None, text_cnn_cross_fit: int = 0,
) -> ExtractSummary:
    """Extract every item of a corpus into ``store/dataset/feature_set`` (see the module docstring)."""
    from pipeline.corpus import load_corpus

    t0 = time.perf_counter()
    mapper = mapper or local_mapper()
    with dataset_writer(store, dataset):
        corpus = load_corpus(corpus_path, default_split=default_split)
        pdir = payload_dir(store, dataset)
        pdir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(pdir.parent)
        check_writable(pdir, BYTES_PER_SEGMENT * len(corpus.segments))
        cfg = prepare_config(cfg or ExtractConfig(), corpus, Path(store) / dataset / "_models")
        cols = [s.column for _, s in cfg.specs()]
        code = code_version()
        items = corpus.items
        keys = [item_key(it, cfg, code) for it in items]
        outcomes: list[Outcome] = []
        names_seen: set[str] = set()
        with progress_bar(total=len(items), desc=f"extract {dataset}", unit="video") as bar:
            for o in mapper(items, cfg, keys, pdir):
                if o.record:  # dimension names are needed once per column: keep memory flat in the items
                    names = o.record.get("dim_names", {})
                    o.record["dim_names"] = {c: n for c, n in names.items() if c not in names_seen}
                    names_seen.update(names)
                outcomes.append(o)
                log_outcome(o, items[o.index].item_id)
                bar.update(1)
                _kill_hook("extract", len(outcomes))
        outcomes.sort(key=lambda o: o.index)
        summary = _summary(outcomes, items, cols, dataset, feature_set, time.perf_counter() - t0)
        records = [o.record for o in outcomes if o.record]
        quarantine = [q for r in records for q in r["quarantine"]]
        quarantine += [quarantine_record(items[o.index].item_id, "extract", f"failed: {o.error}")
                       for o in outcomes if o.error]
        if summary.error_rate > max_error_rate or summary.items_done == 0:
            write_quarantine(store, dataset, feature_set, quarantine)
            raise ExtractionFailed(
                f"{summary.n_failed}/{summary.n_items} items failed (error rate {summary.error_rate:.0%} > max "
                f"{max_error_rate:.0%}, or no feature produced); nothing written to {dataset}/{feature_set}; "
                f"reasons: {summary.reasons}", summary)

        loaded = 0

        def load(i: int) -> Any:
            nonlocal loaded
            _kill_hook("write", loaded)
            loaded += 1
            try:
                return payload.load(pdir / records[i]["payload"])
            except InputError as e:  # a damaged cache entry: forget it, so the next run recomputes the item
                (pdir / f"{records[i]['key']}.json").unlink(missing_ok=True)
                raise StoreError(f"the cached result of item {records[i]['item_id']!r} is damaged ({e}); it was "
                                 "removed, run again to extract that item anew") from e

        path = write_streamed(records, load, store=store, dataset=dataset, feature_set=feature_set, cfg=cfg,
                              extra={"corpus": corpus.source, **(extra or {})})
        write_quarantine(store, dataset, feature_set, quarantine)
        summary.path = str(path)
        if text_cnn:
            from pipeline.text_cnn import TextCNNConfig, produce_text_cnn

            summary.text_cnn = produce_text_cnn(TextCNNConfig(cross_fit=text_cnn_cross_fit), store=store,
                                                dataset=dataset, words_feature_set=f"{feature_set}.seq",
                                                out_feature_set=f"{feature_set}.textcnn")
    summary.wall_seconds = time.perf_counter() - t0
    summary.realtime_factor = summary.media_seconds / summary.wall_seconds if summary.wall_seconds > 0 else 0.0
    return summary
