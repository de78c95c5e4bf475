"""``extract-corpus``: per-video feature extraction of a raw-video corpus into the store, incrementally.

The outer flow picks the task runner from its ``orchestration`` parameter (threads by default, Dask on
request) and runs the inner flow with it, so a deployment can switch runners per run. Each video is one
cached, retried task (``flows.tasks.extract_video``); the store is written once at the end, atomically.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed

from flows.tasks import (
    OrchestrationConfig,
    cache_dir,
    code_version,
    extract_video_task,
    item_key,
    make_task_runner,
    quarantine_record,
    storage_path,
)
from pipeline import payload

DEFAULT_ITEM_FN = "pipeline.extract:extract_item"


def _outcome(item_id: str, future) -> dict[str, Any]:
    future.wait()
    state = future.state
    if state.is_completed():
        rec = state.result()
        return {"item_id": item_id, "state": state.name, "record": rec, "error": None}
    try:
        state.result(raise_on_failure=True)
        reason = state.message or state.name
    except BaseException as e:  # the task's last exception after its retries
        reason = f"{type(e).__name__}: {e}"
    return {"item_id": item_id, "state": state.name, "record": None, "error": reason}


@flow(name="extract-items", validate_parameters=False)
def extract_items(corpus: str, store: str, dataset: str, extract: dict | None, orchestration: dict,
                  item_fn: str = DEFAULT_ITEM_FN) -> list[dict[str, Any]]:
    """Map the per-video task over the corpus; returns one outcome per item (never raises per item)."""
    from pipeline.corpus import load_corpus
    from pipeline.extract import ExtractConfig

    orch = OrchestrationConfig(**orchestration)
    cfg = ExtractConfig(**(extract or {}))
    items = load_corpus(corpus).items
    code = code_version()
    keys = [item_key(it, cfg, code) for it in items]
    pdir = cache_dir(store, dataset) / "payloads"
    pdir.mkdir(parents=True, exist_ok=True)
    task = extract_video_task(orch, store, dataset)
    futures = [task.submit(it, cfg, k, str(pdir), item_fn) for it, k in zip(items, keys, strict=True)]
    outcomes = [_outcome(it.item_id, f) for it, f in zip(items, futures, strict=True)]
    # A cached record whose payload file was removed is stale: recompute just those items.
    stale = [i for i, o in enumerate(outcomes)
             if o["record"] and o["record"]["payload"] and not (pdir / o["record"]["payload"]).is_file()]
    if stale:
        fresh = task.with_options(refresh_cache=True)
        for i in stale:
            outcomes[i] = _outcome(items[i].item_id, fresh.submit(items[i], cfg, keys[i], str(pdir), item_fn))
    return outcomes


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts that say what ran: computed vs cached, quarantined and failed items, and why."""
    failed = [o for o in outcomes if o["error"]]
    quarantined = [o for o in outcomes if o["record"] and o["record"]["payload"] is None]
    reasons = Counter(o["error"] for o in failed)
    reasons.update(q["reason"] for o in quarantined for q in o["record"]["quarantine"])
    return {
        "n_items": len(outcomes),
        "n_computed": sum(o["state"] == "Completed" for o in outcomes),
        "n_cached": sum(o["state"] == "Cached" for o in outcomes),
        "n_quarantined": len(quarantined),
        "n_failed": len(failed),
        "error_rate": (len(failed) + len(quarantined)) / max(1, len(outcomes)),
        "failed_items": [o["item_id"] for o in failed + quarantined],
        "reasons": dict(reasons.most_common()),
    }


def write_quarantine(store: str, dataset: str, feature_set: str, records: list[dict]) -> Path | None:
    """Merge item-level failures into the feature set's quarantine table (atomic rewrite)."""
    import pandas as pd
    import pyarrow as pa

    from pipeline.store import write_atomic

    if not records:
        return None
    path = storage_path(store) / dataset / "_quarantine" / f"{feature_set}.parquet"
    new = pd.DataFrame(records, columns=["item_id", "segment_id", "modality", "stage", "reason"])
    if path.is_file():
        old = pd.read_parquet(path)
        new = pd.concat([old, new], ignore_index=True).drop_duplicates()
    return write_atomic(pa.Table.from_pandas(new, preserve_index=False), path)


@flow(name="extract-corpus", log_prints=True)
def extract_corpus(corpus: str, store: str, dataset: str, feature_set: str = "extracted",
                   extract: dict | None = None, orchestration: dict | None = None,
                   item_fn: str = DEFAULT_ITEM_FN) -> dict[str, Any]:
    """Extract every video of ``corpus`` (cached per video) and write ``store/dataset/feature_set``."""
    from pipeline.extract import ExtractConfig, write_extracted

    logger = get_run_logger()
    orch = OrchestrationConfig(**(orchestration or {}))
    store = str(storage_path(store).resolve())
    runner = make_task_runner(orch)
    outcomes = extract_items.with_options(task_runner=runner)(
        corpus, store, dataset, extract, orch.model_dump(), item_fn
    )
    summary = summarise(outcomes)
    summary.update({"dataset": dataset, "feature_set": feature_set, "task_runner": orch.task_runner})
    logger.info("extraction: %(n_items)d items, %(n_computed)d computed, %(n_cached)d cached, "
                "%(n_quarantined)d quarantined, %(n_failed)d failed", summary)
    pdir = cache_dir(store, dataset) / "payloads"
    results = [payload.load(pdir / o["record"]["payload"]) for o in outcomes if o["record"] and o["record"]["payload"]]
    records = [q for o in outcomes if o["record"] for q in o["record"]["quarantine"]]
    records += [quarantine_record(o["item_id"], "extract", f"failed after retries: {o['error']}") for o in failed_of(outcomes)]
    if summary["error_rate"] > orch.max_error_rate:
        write_quarantine(store, dataset, feature_set, records)
        msg = (f"{summary['n_failed'] + summary['n_quarantined']}/{summary['n_items']} items failed "
               f"(error rate {summary['error_rate']:.0%} > {orch.max_error_rate:.0%}); reasons: {summary['reasons']}")
        return Failed(message=msg, data=summary)
    if not results:
        return Failed(message="no item could be extracted", data=summary)
    cfg = ExtractConfig(**(extract or {}))
    path = write_extracted(results, store=store, dataset=dataset, feature_set=feature_set, cfg=cfg)
    write_quarantine(store, dataset, feature_set, records)
    summary["path"] = str(path)
    return summary


def failed_of(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outcomes if o["error"]]
