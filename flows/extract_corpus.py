"""``extract-corpus``: per-video feature extraction of a raw-video corpus into the store, incrementally.

The outer flow picks the task runner from its ``orchestration`` parameter (threads by default, Dask on
request) and runs the inner flow with it, so a deployment can switch runners per run. Each video is one
cached, retried task (``flows.tasks.extract_video``); the store is written once at the end, atomically.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Failed

from flows.tasks import (
    OrchestrationConfig,
    cache_dir,
    code_version,
    drop_corrupt_records,
    extract_video_task,
    item_key,
    make_task_runner,
    quarantine_record,
    storage_path,
)
from flows.ui import run_name, tag_run
from pipeline import payload
from pipeline.logs import get_logger, progress_bar

DEFAULT_ITEM_FN = "pipeline.extract:extract_item"
log = get_logger("extract")


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


def log_outcome(o: dict[str, Any]) -> None:
    """One line per video: extracted / from cache / failed, and every quarantine reason it carries."""
    if o["error"]:
        log.warning("video %s: failed after retries: %s", o["item_id"], o["error"])
        return
    rec, cached = o["record"], o["state"] == "Cached"
    if rec["payload"] is None:
        log.warning("video %s: nothing extracted%s", o["item_id"], " (from cache)" if cached else "")
    else:
        log.info("video %s: %s, %s feature columns", o["item_id"], "from cache" if cached else "extracted",
                 rec["n_columns"])
    for q in rec["quarantine"]:
        log.warning("video %s: quarantined [%s/%s] %s", o["item_id"], q.get("modality") or "-",
                    q.get("stage") or "-", q["reason"])


@flow(name="extract-items", flow_run_name=run_name("extract-items"), validate_parameters=False)
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
    drop_corrupt_records(cache_dir(store, dataset) / "results")
    task = extract_video_task(orch, store, dataset)
    futures = [task.submit(it, cfg, k, str(pdir), item_fn) for it, k in zip(items, keys, strict=True)]
    bar = progress_bar(total=len(items), desc=f"extract {dataset}", unit="video")
    outcomes = []
    for it, f in zip(items, futures, strict=True):
        outcomes.append(_outcome(it.item_id, f))
        bar.update()
    bar.close()
    # A cached record whose payload file was removed is stale: recompute just those items.
    stale = [i for i, o in enumerate(outcomes)
             if o["record"] and o["record"]["payload"] and not (pdir / o["record"]["payload"]).is_file()]
    if stale:
        fresh = task.with_options(refresh_cache=True)
        for i in stale:
            outcomes[i] = _outcome(items[i].item_id, fresh.submit(items[i], cfg, keys[i], str(pdir), item_fn))
    for o in outcomes:
        log_outcome(o)
    return outcomes


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts that say what ran: computed vs cached, failed items (nothing extracted) and why."""
    errors = [o for o in outcomes if o["error"]]
    empty = [o for o in outcomes if o["record"] and o["record"].get("n_columns") == 0]
    reasons = Counter(f"[extract] failed after retries: {o['error']}" for o in errors)
    reasons.update(f"[{q.get('modality') or '-'}/{q.get('stage') or '-'}] {q['reason']}"
                   for o in outcomes if o["record"] for q in o["record"]["quarantine"])
    return {
        "n_items": len(outcomes),
        "n_computed": sum(o["state"] == "Completed" for o in outcomes),
        "n_cached": sum(o["state"] == "Cached" for o in outcomes),
        "n_failed": len(errors) + len(empty),
        "n_failed_after_retries": len(errors),
        "n_quarantine_records": sum(len(o["record"]["quarantine"]) for o in outcomes if o["record"]),
        "error_rate": (len(errors) + len(empty)) / max(1, len(outcomes)),
        "failed_items": [o["item_id"] for o in errors + empty],
        "reasons": dict(reasons.most_common()),
    }


@flow(name="extract-corpus", flow_run_name=run_name("extract-corpus"), log_prints=True)
def extract_corpus(corpus: str, store: str, dataset: str, feature_set: str = "extracted",
                   extract: dict | None = None, orchestration: dict | None = None,
                   item_fn: str = DEFAULT_ITEM_FN) -> dict[str, Any]:
    """Extract every video of ``corpus`` (cached per video) and write ``store/dataset/feature_set``."""
    from pipeline.corpus import load_corpus
    from pipeline.extract import ExtractConfig, prepare_config, write_extracted, write_quarantine

    tag_run(dataset, corpus)
    orch = OrchestrationConfig(**(orchestration or {}))
    store = str(storage_path(store).resolve())
    corpus = str(Path(corpus).resolve())
    # Extractors that learn from the whole corpus (word2vec) are fitted once here; their concrete config
    # (model file + hash) then enters every item's cache key.
    cfg = prepare_config(ExtractConfig(**(extract or {})), load_corpus(corpus), Path(store) / dataset / "_models")
    outcomes = extract_items.with_options(task_runner=make_task_runner(orch))(
        corpus, store, dataset, cfg.model_dump(mode="json"), orch.model_dump(), item_fn
    )
    summary = summarise(outcomes)
    summary.update({"dataset": dataset, "feature_set": feature_set, "task_runner": orch.task_runner})
    log.info("extraction: %(n_items)d items, %(n_computed)d computed, %(n_cached)d cached, "
                "%(n_failed)d failed, %(n_quarantine_records)d quarantine records", summary)

    pdir = cache_dir(store, dataset) / "payloads"
    results = [payload.load(pdir / o["record"]["payload"]) for o in outcomes if o["record"] and o["record"]["payload"]]
    records = [q for o in outcomes if o["record"] for q in o["record"]["quarantine"]]
    records += [quarantine_record(o["item_id"], "extract", f"failed after retries: {o['error']}")
                for o in outcomes if o["error"]]
    if summary["error_rate"] > orch.max_error_rate or not results:
        write_quarantine(store, dataset, feature_set, records)
        msg = (f"{summary['n_failed']}/{summary['n_items']} items failed (error rate {summary['error_rate']:.0%} "
               f"> max {orch.max_error_rate:.0%}); nothing written to {dataset}/{feature_set}; "
               f"reasons: {summary['reasons']}")
        log.error(msg)
        return Failed(message=msg, data=summary)
    path = write_extracted(results, store=store, dataset=dataset, feature_set=feature_set, cfg=cfg,
                           extra={"corpus": str(corpus)})
    write_quarantine(store, dataset, feature_set, records)  # + item-level failures the driver never saw
    summary["path"] = str(path)
    return summary
