"""Task wrappers: per-video extraction (mapped, retried, cached) and the orchestration config.

Failure policy
* transient errors (anything that is not an :class:`~pipeline.errors.AffectflowError`: I/O hiccups,
  a worker that died, out-of-memory) are retried with exponential backoff and jitter;
* permanent, per-item errors (``ItemError``/``InputError``: no audio stream, undecodable file) are not
  retried: the item goes to the quarantine table with its reason and the flow continues;
* the flow fails only when the share of failed items exceeds ``max_error_rate``.

Caching: a video's result is keyed by the file's content digest + the segment table + the extractor
config hash + the extraction code version (:func:`item_key`). Results persist under
``<store>/.cache/<dataset>/`` as a small JSON record (Prefect's result, no pickle) pointing at a safe
``.npz`` payload (``pipeline.payload``). Unchanged videos are never recomputed; a changed file, segment
table, config or extraction code changes the key of exactly the affected items.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from prefect import task
from prefect.serializers import JSONSerializer
from prefect.tasks import exponential_backoff
from pydantic import Field

from flows.ui import route_pipeline_logs
from pipeline import payload
from pipeline.errors import AffectflowError, InputError, ItemError
from pipeline.provenance import StageConfig, hash_file, hash_json, library_versions

route_pipeline_logs()  # every flow imports this module: the pipeline's log lines reach the run's logs

# JSON results with no object hooks: a tampered result file can at worst fail to parse.
SAFE_JSON = JSONSerializer(object_encoder=None, object_decoder=None)

# Source whose change must invalidate cached features (relative to the project root).
EXTRACTION_CODE = (
    "pipeline/extract.py",
    "pipeline/align.py",
    "pipeline/media.py",
    "pipeline/corpus.py",
    "pipeline/text_cnn.py",
    "pipeline/visual_cnn.py",
    "pipeline/extractors/*.py",
    "models/textcnn.py",
    "models/c3d.py",
)
EXTRACTION_LIBRARIES = ("numpy", "torch", "opensmile", "librosa", "praat-parselmouth", "av",
                        "opencv-python-headless", "dlib-bin", "gensim")


class OrchestrationConfig(StageConfig):
    """How a flow runs its tasks; saved with the run like every other config."""

    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(2, ge=1, description="threads for the thread runner")
    dask_workers: int = Field(2, ge=1, description="LocalCluster workers when no dask_address is given")
    dask_address: str | None = Field(None, description="scheduler of an existing (multi-node) Dask cluster")
    retries: int = Field(2, ge=0)
    retry_backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry")
    max_error_rate: float = Field(0.5, ge=0, le=1, description="fail the flow above this share of failed items")


def make_task_runner(cfg: OrchestrationConfig):
    """Threads by default; Dask (``prefect-dask``) for a local 2-worker cluster or a remote scheduler."""
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": cfg.dask_workers, "threads_per_worker": 1, "dashboard_address": None}
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=cfg.max_workers)


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
    """Cache key of one video: content digest + segments (+ word timings) + config hash + code version."""
    media = hash_file(item.path) if item.path is not None else "no-media"
    tables = [
        None if t is None else t.to_json(orient="split", date_format="iso", double_precision=15)
        for t in (item.segments, getattr(item, "words", None))
    ]
    return hash_json({"media": media, "tables": tables, "config": cfg.config_hash(), "code": code})


def storage_path(url: str | os.PathLike) -> Path:
    """Local path of a store/result URL (``file://`` or a plain path).

    Other fsspec schemes (``s3://``, ``gcs://``...) are for Prefect result storage on multi-node
    clusters (see docs/orchestration.md); the feature store itself must be a POSIX path (a shared
    mount on a cluster) because Parquet writes are made atomic with rename.
    """
    s = os.fspath(url)
    parsed = urlparse(s)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else s)
    raise InputError(f"{s!r}: only local or file:// paths can hold the feature store (got {parsed.scheme}://)")


def cache_dir(store: str | os.PathLike, dataset: str) -> Path:
    # Hidden under the store (the store's readers skip dot-names), next to the data it speeds up.
    return storage_path(store) / ".cache" / dataset


def drop_corrupt_records(directory: Path) -> list[Path]:
    """Delete cache records a killed process left half-written (Prefect writes them in place).

    A record that does not parse would otherwise fail the next run's cache lookup; without it the
    item is simply recomputed."""
    import json

    dropped = []
    if not directory.is_dir():
        return dropped
    for p in directory.iterdir():
        if not p.is_file():
            continue
        try:
            json.loads(p.read_bytes())
        except (ValueError, UnicodeDecodeError):
            p.unlink(missing_ok=True)
            dropped.append(p)
    return dropped


# ------------------------------------------------------------------------------------------------ tasks


def is_transient(task, task_run, state) -> bool:  # noqa: ARG001 (Prefect's retry_condition_fn signature)
    """Retry everything except our own expected errors: those are properties of the input."""
    try:
        state.result(raise_on_failure=True)
    except AffectflowError:
        return False
    except BaseException:
        return True
    return False


def resolve(dotted: str) -> Callable[..., Any]:
    """``module:function`` -> the function (lets benches and tests swap the per-item function)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def quarantine_record(item_id: str, stage: str, reason: str, modality: str | None = None,
                      segment_id: str | None = None) -> dict:
    return {"item_id": item_id, "segment_id": segment_id, "modality": modality, "stage": stage, "reason": reason}


def _cache_key(context, parameters: dict[str, Any]) -> str:  # noqa: ARG001
    return parameters["key"]


@task(
    name="extract-video",
    task_run_name="extract-{item.item_id}",
    cache_key_fn=_cache_key,
    persist_result=True,
    result_serializer=SAFE_JSON,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=1.0),
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)
def extract_video(item: Any, cfg: StageConfig, key: str, payload_dir: str,
                  fn: str = "pipeline.extract:extract_item") -> dict:
    """Extract one video; returns a JSON record (what Prefect caches) pointing at the payload file.

    A permanent ``ItemError`` for the whole item is turned into a quarantine record (and cached: the
    same bytes with the same config fail the same way). Transient errors propagate, so Prefect retries.
    """
    try:
        result = resolve(fn)(item, cfg)
    except (ItemError, InputError) as e:
        stage = getattr(e, "stage", "extract")
        return {"item_id": item.item_id, "key": key, "payload": None, "n_columns": 0,
                "quarantine": [quarantine_record(item.item_id, stage, str(e), getattr(e, "modality", None))]}
    path = payload.save(result, Path(payload_dir) / f"{key}.npz")
    # Per-modality failures travel inside the result (ItemResult.quarantine); copied here for the summary.
    vectors = getattr(result, "vectors", None)
    return {"item_id": item.item_id, "key": key, "payload": path.name,
            "n_columns": None if vectors is None else len(vectors),
            "quarantine": list(getattr(result, "quarantine", []))}


def extract_video_task(orch: OrchestrationConfig, store: str | os.PathLike, dataset: str):
    """The task with this run's retry policy and result storage (the cache lives with the store)."""
    return extract_video.with_options(
        retries=orch.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=orch.retry_backoff_s),
        result_storage=cache_dir(store, dataset) / "results",
    )
