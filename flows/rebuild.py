"""``rebuild``: ingest -> extract per video -> align -> store -> UCLN -> fusion training -> evaluation -> report.

The keyed stages (ingest, one UCLN per modality, context features, fusion models) are declared in
:mod:`flows.graph`: each names its inputs (content digests), its config and its code (the import closure
of its module, found automatically), and publishes its output atomically under its key. That output is
the record: a stage whose output exists is never recomputed, even when a kill -9 landed between the
publication and Prefect's cache record; Prefect's cache is only an index over the outputs. Per-video
extraction keeps its own cache (:mod:`flows.extract_corpus`). A rebuild killed with ``kill -9`` and started
again therefore ends with exactly the store an uninterrupted run writes, and no partial files: stale temp
files are removed under the store's lock at the next start.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.config import RebuildConfig
from flows.graph import Stage, execute, feature_set_digest, plan
from flows.tasks import SAFE_JSON, drop_corrupt_records, storage_path
from flows.ui import flow_run_info, run_name, tag_run
from pipeline.atomic import write_text_atomic
from pipeline.errors import StoreError
from pipeline.logs import get_logger

__all__ = ["RebuildConfig", "rebuild"]
log = get_logger("rebuild")


# ------------------------------------------------------------------------------------- stage plumbing


def _key(context, parameters: dict[str, Any]) -> str:  # noqa: ARG001
    return parameters["key"]


@task(name="stage", cache_key_fn=_key, persist_result=True, result_serializer=SAFE_JSON)
def stage_task(spec: dict, key: str) -> dict:
    """Run one declared stage (never retried: training is deterministic, a crash is a bug to see)."""
    return {"output": Stage(**spec).output, "computed": execute(Stage(**spec))}


def run_stage(stage: Stage, cache_root: Path) -> dict:
    """Run a stage through Prefect (the index); its published output decides whether it is recomputed."""
    label = stage.label or stage.name
    t = stage_task.with_options(name=stage.name, task_run_name=stage.run_name or stage.name,
                                result_storage=(cache_root / ".cache" / "_stages").resolve())
    log.info("stage %s: start (cache key %s)", label, stage.key)
    t0 = time.perf_counter()
    state = t(spec=stage.model_dump(), key=stage.key, return_state=True)
    result = state.result()
    if state.name == "Cached":
        # The index says done: the output must say so too (a deleted output is recomputed; a feature
        # set is linked back into the store).
        refresh = not stage.done
        if refresh:
            log.info("stage %s: cached output is gone, recomputing", label)
            state = t.with_options(refresh_cache=True)(spec=stage.model_dump(), key=stage.key, return_state=True)
            result = state.result()
        else:
            execute(stage)
        computed = refresh and result["computed"]
    else:
        computed = result["computed"]
    secs = round(time.perf_counter() - t0, 2)
    # "served from cache": its published output (the record; Prefect's cache only indexes it) exists
    log.info("stage %s: end in %.2f s, %s (cache key %s)", label, secs,
             "recomputed" if computed else "served from cache", stage.key)
    return {"stage": stage.name, "what": stage.output, "key": stage.key, "recomputed": computed, "seconds": secs}


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """One rebuild per store at a time (flock: released by the kernel even on kill -9)."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".rebuild.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise StoreError("another rebuild is running on this store", path=store) from e
        yield


def clean_partials(store: Path, out: Path) -> list[Path]:
    """Remove what a killed run left behind: hidden temp files and unfinished run directories."""
    removed: list[Path] = []
    for root in (store, out):
        if not root.is_dir():
            continue
        for p in root.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
        for p in root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@task(name="evaluate", task_run_name="evaluate-{model_name}-{split}")
def evaluate(run_dir: str, split: str, store: str, model_name: str) -> dict:
    from pipeline.evaluate import evaluate_run

    return evaluate_run(run_dir, split, store=store)


# ----------------------------------------------------------------------------------------------- flow


def _extract(cfg: RebuildConfig, store: Path) -> dict:
    """A raw-video corpus into the store through per-video extraction (its own per-video cache)."""
    from flows.extract_corpus import extract_corpus

    log.info("stage extract: start (%s, per-video cache keys)", cfg.corpus)
    t0 = time.perf_counter()
    summary = extract_corpus(corpus=cfg.corpus, store=str(store), dataset=cfg.dataset, feature_set=cfg.raw_set,
                             extract=cfg.extract, orchestration=cfg.orchestration.model_dump())
    secs = round(time.perf_counter() - t0, 2)
    log.info("stage extract: end in %.2f s, %d videos recomputed, %d served from cache, %d failed",
             secs, summary["n_computed"], summary["n_cached"], summary["n_failed"])
    return {"stage": "extract", "what": cfg.corpus,
            "recomputed": f"{summary['n_computed']}/{summary['n_items']} videos", "seconds": secs}


def make_config(**given: Any) -> RebuildConfig:
    """The RebuildConfig of the values given (None = not given: the config's own default)."""
    return RebuildConfig(**{k: v for k, v in given.items() if v is not None})


@flow(name="rebuild", flow_run_name=run_name("rebuild"), log_prints=True)
def rebuild(corpus: str | None = None, store: str | None = None, out: str | None = None, dataset: str | None = None,
            fusion: list[str] | None = None, ucln: dict | None = None, fusion_train: dict | None = None,
            fusion_model: dict | None = None, extract: dict | None = None,
            orchestration: dict | None = None, seed: int | None = None, split: str | None = None,
            raw_features: str | None = None, device: str | None = None, context_features: str | None = None,
            modalities: list[str] | None = None, ucln_model: dict | None = None, cross_fit: int | None = None,
            report: bool = True) -> dict:
    """The whole pipeline; returns metrics per fusion model and what each stage recomputed. Parameters
    left None take :class:`flows.config.RebuildConfig`'s defaults (defined there only)."""
    cfg = make_config(corpus=corpus, store=store, out=out, dataset=dataset, fusion=fusion, ucln=ucln,
                      fusion_train=fusion_train, fusion_model=fusion_model, extract=extract,
                      orchestration=orchestration, seed=seed, split=split, raw_features=raw_features, device=device,
                      context_features=context_features, modalities=modalities, ucln_model=ucln_model,
                      cross_fit=cross_fit)
    tags = tag_run(cfg.dataset, cfg.corpus)
    run = flow_run_info()
    log.info("%s: rebuild %s (tags %s), fusion %s, metrics on split %s%s", run["name"], cfg.dataset,
             ", ".join(tags), cfg.fusion, cfg.split, f"; UI: {run['url']}" if run["url"] else "")
    store_p, out_p = storage_path(cfg.store).resolve(), storage_path(cfg.out).resolve()
    stages: list[dict] = []
    with store_lock(store_p):
        removed = clean_partials(store_p, out_p) + drop_corrupt_records(store_p / ".cache" / "_stages")
        if removed:
            log.warning("removed %d partial files left by an interrupted run", len(removed))
        raw_digest = None
        if cfg.corpus is not None:
            stages.append(_extract(cfg, store_p))
            raw_digest = feature_set_digest(store_p, cfg.dataset, cfg.raw_set)
        graph = plan(cfg, store_p, out_p, raw_digest)
        runs: dict[str, str] = {}
        for st in graph:
            stages.append(run_stage(st, store_p))
            if st.name.startswith("train-"):
                runs[st.name.removeprefix("train-")] = st.output
        results: dict[str, dict] = {}
        timings: dict[str, float] = {}
        for name, run_dir in runs.items():
            t0 = time.perf_counter()
            results[name] = evaluate(run_dir, cfg.split, str(store_p), name)
            log.info("%s", metrics_line(name, results[name]))
            timings[f"evaluate-{name}"] = round(time.perf_counter() - t0, 2)
        summary = {"flow_run": run, "config": cfg.model_dump(mode="json"), "stages": stages, "runs": runs,
                   "metrics": {n: _scalars(r) for n, r in results.items()}}
        if report:
            from flows.report import publish_report

            t0 = time.perf_counter()
            summary["report"] = str(publish_report(cfg, results, runs, stages, store_p, out_p))
            timings["report"] = round(time.perf_counter() - t0, 2)
        summary["timings"] = timings
    _write_json(out_p / "report" / "summary.json", summary)
    return summary


def metrics_line(name: str, res: dict) -> str:
    """One line of final metrics, as the CLI's table shows them (percent)."""
    pct = {k: f"{100 * res[k]:.2f}" for k in ("accuracy", "f1_weighted", "majority_accuracy") if k in res}
    return (f"{name} on {res.get('split')} (n={res.get('n')}): accuracy {pct.get('accuracy')}%, weighted F1 "
            f"{pct.get('f1_weighted')}% (majority class {pct.get('majority_accuracy', '-')}%)")


def _scalars(res: dict) -> dict:
    return {k: v for k, v in res.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))

