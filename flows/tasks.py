"""Task wrappers: per-video extraction (mapped, retried, cached) and the orchestration config.

The per-item work is ``pipeline.engine.run_item`` (the same function the CLI's process pool runs);
this module only gives it Prefect's policy.

Failure policy
* transient errors (anything that is not an :class:`~pipeline.errors.AffectflowError`: I/O hiccups,
  a worker that died, out-of-memory) are retried with exponential backoff and jitter;
* permanent, per-item errors (``ItemError``/``InputError``: no audio stream, undecodable file) are not
  retried: the item goes to the quarantine table with its reason and the flow continues;
* the flow fails only when the share of failed items exceeds ``max_error_rate``.

Caching: a video's result is keyed by ``pipeline.engine.item_key`` (content digest + segment table +
extractor config hash + extraction code version). Prefect's result is a small JSON record (no pickle)
under ``<store>/.cache/<dataset>/results`` pointing at the item's safe ``.npz`` payload
(``pipeline.payload``). Unchanged videos are never recomputed; a changed file, segment table, config or
extraction code changes the key of exactly the affected items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prefect import task
from prefect.serializers import JSONSerializer
from prefect.tasks import exponential_backoff

from flows.config import OrchestrationConfig
from flows.ui import route_pipeline_logs
from pipeline.engine import DEFAULT_ITEM_FN, payload_dir, run_item
from pipeline.errors import AffectflowError, InputError
from pipeline.provenance import StageConfig

route_pipeline_logs()  # every flow imports this module: the pipeline's log lines reach the run's logs

# JSON results with no object hooks: a tampered result file can at worst fail to parse.
SAFE_JSON = JSONSerializer(object_encoder=None, object_decoder=None)

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
    return payload_dir(storage_path(store), dataset).parent


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


def _cache_key(context, parameters: dict[str, Any]) -> str:  # noqa: ARG001
    return parameters["key"]


@task(
    name="extract-video",
    task_run_name="extract-{item.item_id}",
    cache_key_fn=_cache_key,
    persist_result=True,
    result_serializer=SAFE_JSON,
    retries=OrchestrationConfig().retries,  # the run's own policy is set by extract_video_task
    retry_delay_seconds=exponential_backoff(backoff_factor=OrchestrationConfig().retry_backoff_s),
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)
def extract_video(item: Any, cfg: StageConfig, key: str, pdir: str, fn: str = DEFAULT_ITEM_FN) -> dict:
    """Extract one video (``pipeline.engine.run_item``); returns its JSON record, what Prefect caches."""
    return run_item(item, cfg, key, pdir, fn)


def extract_video_task(orch: OrchestrationConfig, store: str | os.PathLike, dataset: str):
    """The task with this run's retry policy and result storage (the cache lives with the store)."""
    return extract_video.with_options(
        retries=orch.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=orch.retry_backoff_s),
        result_storage=cache_dir(store, dataset) / "results",
    )
