"""``extract-corpus``: per-video feature extraction of a raw-video corpus into the store, incrementally.

A thin flow over the one corpus driver, ``pipeline.engine.extract_corpus`` (the same as
``affectflow extract``): it only supplies the mapper, which runs each video as a cached, retried Prefect
task (``flows.tasks.extract_video``) on the task runner named by ``orchestration`` (threads by default,
Dask on request), and turns a failure past ``max_error_rate`` into a Failed state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Failed

from flows.tasks import (
    OrchestrationConfig,
    cache_dir,
    drop_corrupt_records,
    extract_video_task,
    make_task_runner,
    storage_path,
)
from flows.ui import run_name, tag_run
from pipeline.engine import DEFAULT_ITEM_FN, ExtractionFailed, Outcome
from pipeline.logs import get_logger

log = get_logger("extract")


def _outcome(index: int, future) -> Outcome:
    future.wait()
    state = future.state
    if state.is_completed():
        return Outcome(index, state.name, state.result())
    try:
        state.result(raise_on_failure=True)
        reason = state.message or state.name
    except BaseException as e:  # the task's last exception after its retries
        reason = f"{type(e).__name__}: {e}"
    return Outcome(index, state.name, None, f"after retries: {reason}")


@flow(name="extract-items", flow_run_name=run_name("extract-items"), validate_parameters=False)
def extract_items(corpus: str, store: str, dataset: str, extract: dict, keys: list[str], default_split: str,
                  orchestration: dict, item_fn: str = DEFAULT_ITEM_FN) -> list[Outcome]:
    """Map the per-video task over the corpus; one outcome per item (never raises per item)."""
    from pipeline.corpus import load_corpus
    from pipeline.extract import ExtractConfig

    orch = OrchestrationConfig(**orchestration)
    cfg = ExtractConfig(**extract)
    items = load_corpus(corpus, default_split=default_split).items  # parameters stay JSON: reload, not send
    pdir = cache_dir(store, dataset) / "payloads"
    drop_corrupt_records(cache_dir(store, dataset) / "results")
    task = extract_video_task(orch, store, dataset)
    futures = [task.submit(it, cfg, k, str(pdir), item_fn) for it, k in zip(items, keys, strict=True)]
    outcomes = [_outcome(i, f) for i, f in enumerate(futures)]
    # A cached record whose payload file was removed is stale: recompute just those items.
    stale = [o.index for o in outcomes if o.record and o.record["payload"] and not (pdir / o.record["payload"]).is_file()]
    if stale:
        fresh = task.with_options(refresh_cache=True)
        for i in stale:
            outcomes[i] = _outcome(i, fresh.submit(items[i], cfg, keys[i], str(pdir), item_fn))
    return outcomes


@flow(name="extract-corpus", flow_run_name=run_name("extract-corpus"), log_prints=True)
def extract_corpus(corpus: str, store: str, dataset: str, feature_set: str = "extracted",
                   extract: dict | None = None, orchestration: dict | None = None,
                   item_fn: str = DEFAULT_ITEM_FN, default_split: str = "train",
                   text_cnn: bool = False) -> dict[str, Any]:
    """Extract every video of ``corpus`` (cached per video) and write ``store/dataset/feature_set``."""
    from pipeline import engine
    from pipeline.extract import ExtractConfig

    tag_run(dataset, corpus)
    orch = OrchestrationConfig(**(orchestration or {}))
    store = str(storage_path(store).resolve())
    corpus = str(Path(corpus).resolve())

    def prefect_mapper(items, cfg, keys, pdir) -> Iterator[Outcome]:  # noqa: ANN001, ARG001 - engine.Mapper
        runner = extract_items.with_options(task_runner=make_task_runner(orch))
        yield from runner(corpus, store, dataset, cfg.model_dump(mode="json"), keys, default_split,
                          orch.model_dump(), item_fn)

    try:
        summary = engine.extract_corpus(corpus, store=store, dataset=dataset, cfg=ExtractConfig(**(extract or {})),
                                        feature_set=feature_set, default_split=default_split, mapper=prefect_mapper,
                                        max_error_rate=orch.max_error_rate, text_cnn=text_cnn)
    except ExtractionFailed as e:
        log.error(str(e))
        return Failed(message=str(e), data={**e.summary.model_dump(), "task_runner": orch.task_runner})
    out = {**summary.model_dump(), "task_runner": orch.task_runner}
    log.info("extraction: %(n_items)d items, %(n_computed)d computed, %(n_cached)d cached, "
                "%(n_failed)d failed, %(n_quarantine_records)d quarantine records", out)
    return out
