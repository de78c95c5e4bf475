"""``rebuild``: ingest -> extract per video -> align -> store -> UCLN -> fusion training -> evaluation -> report.

Every stage is a cached Prefect task keyed by the *content* of its inputs (feature-set source hashes,
file digests), its config hash and the version of the code it runs, so an unchanged re-run recomputes
nothing and a change recomputes only what depends on it. Outputs are written atomically: feature sets
through the store's temp-file-and-rename, run directories trained in ``<out>/.tmp-*`` and renamed into
``<out>/<stage>/<key>`` when complete. A rebuild killed with ``kill -9`` and started again therefore
ends with exactly the store an uninterrupted run writes, and no partial files: stale temp files are
removed under the store's lock at the next start.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, task
from pydantic import Field

from flows.tasks import SAFE_JSON, OrchestrationConfig, code_version, drop_corrupt_records, storage_path
from flows.ui import flow_run_info, run_name, tag_run
from pipeline.atomic import write_text_atomic
from pipeline.crossfit import CROSS_FIT_DEFAULT
from pipeline.errors import StoreError
from pipeline.logs import get_logger
from pipeline.provenance import StageConfig, hash_files, hash_json

# Code each stage runs: a change there (and only there) invalidates the stage's cached output.
TRAINER_CODE = ("models/base.py", "models/registry.py", "pipeline/train.py", "pipeline/data.py",
                "pipeline/checkpoint.py", "pipeline/evaluate.py")
UCLN_CODE = (*TRAINER_CODE, "models/ucln.py", "pipeline/context.py", "pipeline/crossfit.py")
FUSION_CODE = (*TRAINER_CODE, "models/*.py")
IMPORT_CODE = ("pipeline/importers/*.py", "pipeline/store.py")
TRAIN_LIBRARIES = ("torch", "numpy", "scikit-learn")
MODALITIES = ("text", "audio", "video")
log = get_logger("rebuild")


class RebuildConfig(StageConfig):
    """Everything that decides a rebuild; written to ``<out>/report/config.json``."""

    corpus: str | None = Field(None, description="raw-video corpus; None = the embedded MOSI features")
    store: str = "store"
    out: str = "runs"
    dataset: str = "mosi"
    raw_features: str = "bclstm-raw"
    context_features: str = "ucln-context"
    modalities: list[str] = list(MODALITIES)
    ucln: dict = Field(default_factory=lambda: {"epochs": 60, "patience": 15, "batch_size": 20})
    ucln_model: dict = Field(default_factory=dict)
    cross_fit: int = Field(CROSS_FIT_DEFAULT, description="folds (by video) for the training rows' context features; 0 = in-sample")
    fusion: list[str] = ["argf"]
    fusion_train: dict = Field(default_factory=lambda: {"epochs": 40, "patience": 10, "batch_size": 32})
    fusion_model: dict = Field(default_factory=dict)
    extract: dict | None = None
    seed: int = 0
    split: str = "valid"
    orchestration: OrchestrationConfig = OrchestrationConfig()


# ------------------------------------------------------------------------------------- stage plumbing


def _key(context, parameters: dict[str, Any]) -> str:  # noqa: ARG001
    return parameters["key"]


def stage(name: str, run_name: str | None = None) -> Callable:
    """A stage task: cached on the ``key`` parameter, JSON result persisted (no pickle), never retried
    (training is deterministic; a crash is a bug to see, not to hide). ``run_name``: the task run's name
    template over its parameters (``train-ucln-{modality}``)."""
    return task(name=name, task_run_name=run_name or name, cache_key_fn=_key, persist_result=True,
                result_serializer=SAFE_JSON)


def run_cached(t, *, label: str, cache_root: Path, key: str, exists: Callable[[Any], bool],
               **kwargs: Any) -> tuple[Any, bool, float]:
    """Run a stage through its cache; if the cached record points at outputs that are gone, recompute.

    Logs the stage's start and end (``label``, cache key, served from cache or not).
    Returns (result, recomputed, seconds)."""
    t = t.with_options(result_storage=(cache_root / ".cache" / "_stages").resolve())
    log.info("stage %s: start (cache key %s)", label, key[:16])
    t0 = time.perf_counter()
    state = t(key=key, return_state=True, **kwargs)
    result = state.result()
    if state.name == "Cached" and not exists(result):
        log.info("stage %s: cached output is gone, recomputing", label)
        state = t.with_options(refresh_cache=True)(key=key, return_state=True, **kwargs)
        result = state.result()
    cached, secs = state.name == "Cached", round(time.perf_counter() - t0, 2)
    log.info("stage %s: end in %.2f s, %s (cache key %s)", label, secs,
             "served from cache" if cached else "recomputed", key[:16])
    return result, not cached, secs


def feature_set_digest(store: Path, dataset: str, feature_set: str) -> str:
    """Content identity of a feature set: what produced it and from what (not its write time)."""
    from pipeline.store import feature_set_path, read_meta

    meta = read_meta(feature_set_path(store, dataset, feature_set))
    return hash_json({"source": meta.source_hash, "producer": meta.producer.config_hash,
                      "modalities": {m: s.model_dump() for m, s in meta.modalities.items()},
                      "rows": meta.n_rows, "lineage": meta.lineage})


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


def _fresh_run_dir(out: Path, stage_name: str, key: str) -> tuple[Path, Path]:
    final = out / stage_name / key
    tmp = out / f".tmp-{stage_name}-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp, final


def _publish(tmp: Path, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a previous run finished this exact stage; results are identical by key
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    os.replace(tmp, final)
    return final


# --------------------------------------------------------------------------------------------- stages


@stage("ingest-embedded")
def ingest_embedded(store: str, key: str) -> list[str]:
    from pipeline.importers.table import import_embedded_default

    return [str(p) for p in import_embedded_default(store)]


@stage("train-ucln", "train-ucln-{modality}")
def train_ucln(store: str, out: str, dataset: str, features: str, modality: str, train: dict, model: dict,
               seed: int, key: str) -> str:
    from pipeline.train import TrainConfig
    from pipeline.train import train as run_training

    cfg = TrainConfig(model="ucln", model_cfg={**model, "modality": modality}, seed=seed,
                      modalities=[modality], **train)
    tmp, final = _fresh_run_dir(Path(out), f"ucln-{modality}", key)
    run_training(cfg, store=store, dataset=dataset, features=features, out_dir=tmp, progress=None)
    return str(_publish(tmp, final))


@stage("context-features", "context-features-{feature_set}")
def context_features(runs: dict, store: str, dataset: str, feature_set: str, cross_fit: int, key: str) -> str:
    from pipeline.context import write_context_features

    return str(write_context_features(runs, store=store, dataset=dataset, feature_set=feature_set, cross_fit=cross_fit))


@stage("train-fusion", "train-{model_name}")
def train_fusion(store: str, out: str, dataset: str, features: dict, model_name: str, train: dict,
                 model: dict, seed: int, key: str) -> str:
    from pipeline.train import TrainConfig
    from pipeline.train import train as run_training

    cfg = TrainConfig(model=model_name, model_cfg=model, seed=seed, **train)
    tmp, final = _fresh_run_dir(Path(out), model_name, key)
    run_training(cfg, store=store, dataset=dataset, features=features, out_dir=tmp, progress=None)
    return str(_publish(tmp, final))


@task(name="evaluate", task_run_name="evaluate-{model_name}-{split}")
def evaluate(run_dir: str, split: str, store: str, model_name: str) -> dict:
    from pipeline.evaluate import evaluate_run

    return evaluate_run(run_dir, split, store=store)


# ----------------------------------------------------------------------------------------------- flow


def _ingest(cfg: RebuildConfig, store: Path) -> tuple[str | dict, dict]:
    """Raw features into the store: the embedded default, or a corpus through per-video extraction."""
    if cfg.corpus is None:
        from pipeline.importers.table import EMBEDDED_DIR

        code = code_version(IMPORT_CODE, ())
        data = sorted(p for p in Path(EMBEDDED_DIR).iterdir() if p.is_file())
        key = hash_json({"data": hash_files(data), "code": code})
        target = store / cfg.dataset / f"{cfg.raw_features}.parquet"
        _, ran, secs = run_cached(ingest_embedded, label="ingest", cache_root=store, key=key, exists=lambda _: target.is_file(),
                            store=str(store))
        return cfg.raw_features, {"stage": "ingest", "what": "embedded mosi/bclstm-raw", "recomputed": ran, "seconds": secs}
    from flows.extract_corpus import extract_corpus

    log.info("stage extract: start (%s, per-video cache keys)", cfg.corpus)
    t0 = time.perf_counter()
    summary = extract_corpus(corpus=cfg.corpus, store=str(store), dataset=cfg.dataset,
                             feature_set=cfg.raw_features, extract=cfg.extract,
                             orchestration=cfg.orchestration.model_dump())
    secs = round(time.perf_counter() - t0, 2)
    log.info("stage extract: end in %.2f s, %d videos recomputed, %d served from cache, %d failed",
             secs, summary["n_computed"], summary["n_cached"], summary["n_failed"])
    return cfg.raw_features, {"stage": "extract", "what": cfg.corpus,
                              "recomputed": f"{summary['n_computed']}/{summary['n_items']} videos", "seconds": secs}


@flow(name="rebuild", flow_run_name=run_name("rebuild"), log_prints=True)
def rebuild(corpus: str | None = None, store: str = "store", out: str = "runs", dataset: str = "mosi",
            fusion: list[str] | None = None, ucln: dict | None = None, fusion_train: dict | None = None,
            fusion_model: dict | None = None, extract: dict | None = None,
            orchestration: dict | None = None, seed: int = 0, split: str = "valid",
            raw_features: str | None = None, report: bool = True, cross_fit: int | None = None) -> dict:
    """The whole pipeline; returns metrics per fusion model and what each stage recomputed."""
    if corpus is not None and raw_features is None:
        raw_features = "extracted"
    overrides = {k: v for k, v in {"fusion": fusion, "ucln": ucln, "fusion_train": fusion_train,
                                   "fusion_model": fusion_model, "extract": extract,
                                   "orchestration": orchestration, "raw_features": raw_features,
                                   "cross_fit": cross_fit}.items()
                 if v is not None}
    cfg = RebuildConfig(corpus=corpus, store=store, out=out, dataset=dataset, seed=seed, split=split,
                        **overrides)
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
        raw, info = _ingest(cfg, store_p)
        stages.append(info)
        ucln_code = code_version(UCLN_CODE, TRAIN_LIBRARIES)
        raw_digest = feature_set_digest(store_p, cfg.dataset, raw)
        modalities = _modalities(cfg, store_p, raw)
        ucln_runs: dict[str, str] = {}
        ucln_keys: dict[str, str] = {}
        for m in modalities:
            key = hash_json({"in": raw_digest, "m": m, "train": cfg.ucln, "model": cfg.ucln_model,
                             "seed": cfg.seed, "code": ucln_code})
            run_dir, ran, secs = run_cached(train_ucln, label=f"train-ucln-{m}", cache_root=store_p, key=key, exists=lambda p: Path(p).is_dir(),
                                      store=str(store_p), out=str(out_p), dataset=cfg.dataset, features=raw,
                                      modality=m, train=cfg.ucln, model=cfg.ucln_model, seed=cfg.seed)
            stages.append({"stage": f"ucln-{m}", "what": run_dir, "recomputed": ran, "seconds": secs})
            ucln_runs[m], ucln_keys[m] = run_dir, key
        target = store_p / cfg.dataset / f"{cfg.context_features}.parquet"
        _, ran, secs = run_cached(context_features, label="context-features", cache_root=store_p,
                            key=hash_json({"runs": ucln_keys, "fs": cfg.context_features, "cross_fit": cfg.cross_fit}),
                            exists=lambda _: target.is_file(), runs=ucln_runs, store=str(store_p),
                            dataset=cfg.dataset, feature_set=cfg.context_features, cross_fit=cfg.cross_fit)
        stages.append({"stage": "context", "what": f"{cfg.dataset}/{cfg.context_features}", "recomputed": ran, "seconds": secs})
        ctx_digest = feature_set_digest(store_p, cfg.dataset, cfg.context_features)
        fusion_code = code_version(FUSION_CODE, TRAIN_LIBRARIES)
        results: dict[str, dict] = {}
        timings: dict[str, float] = {}
        runs: dict[str, str] = {}
        for name in cfg.fusion:
            key = hash_json({"in": ctx_digest, "model": name, "train": cfg.fusion_train,
                             "cfg": cfg.fusion_model.get(name, {}), "seed": cfg.seed, "code": fusion_code})
            run_dir, ran, secs = run_cached(train_fusion, label=f"train-{name}", cache_root=store_p, key=key, exists=lambda p: Path(p).is_dir(),
                                      store=str(store_p), out=str(out_p), dataset=cfg.dataset, features=cfg.context_features,
                                      model_name=name, train=cfg.fusion_train,
                                      model=cfg.fusion_model.get(name, {}), seed=cfg.seed)
            stages.append({"stage": f"train-{name}", "what": run_dir, "recomputed": ran, "seconds": secs})
            runs[name] = run_dir
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


def _modalities(cfg: RebuildConfig, store: Path, feature_set: str) -> list[str]:
    """The configured modalities the raw feature set actually has (a text-only corpus -> text)."""
    from pipeline.store import feature_set_path, read_meta

    have = read_meta(feature_set_path(store, cfg.dataset, feature_set)).modalities
    mods = [m for m in cfg.modalities if m in have]
    if not mods:
        raise StoreError(f"{cfg.dataset}/{feature_set} has none of the modalities {cfg.modalities} (has {list(have)})")
    return mods


def metrics_line(name: str, res: dict) -> str:
    """One line of final metrics, as the CLI's table shows them (percent)."""
    pct = {k: f"{100 * res[k]:.2f}" for k in ("accuracy", "f1_weighted", "majority_accuracy") if k in res}
    return (f"{name} on {res.get('split')} (n={res.get('n')}): accuracy {pct.get('accuracy')}%, weighted F1 "
            f"{pct.get('f1_weighted')}% (majority class {pct.get('majority_accuracy', '-')}%)")


def _scalars(res: dict) -> dict:
    return {k: v for k, v in res.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))

