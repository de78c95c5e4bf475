"""Hyper-parameter search with Optuna over the search space a model class declares as data.

``Model.search_space`` maps a key to a list (categorical choices) or a tuple ``(lo, hi[, "log"])``
(a range; ints give an int range). A key that is a :class:`pipeline.train.TrainConfig` field
(``batch_size``, ``patience``, ...) goes to the trainer, every other key to the model config. Each
trial trains with the one trainer and is scored on VALID only (the epoch inside a trial is chosen on
valid too); the test split is never read. The sampler is seeded, so a search is repeatable.

A trial's value is the MEAN valid metric over ``TuneConfig.seeds`` (default: the base config's seed).
One seed's valid accuracy swings by a point or more from initialisation alone (docs/training.md), so a
single-seed search mostly picks a lucky seed; tune on a few seeds, and report on other seeds. The seeds of
a trial train in ``workers`` processes.
The result is a YAML file of TrainConfig fields that ``affectflow train --config`` accepts.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import yaml
from pydantic import Field

from models.registry import get_model_class
from pipeline.atomic import write_text_atomic
from pipeline.data import FeaturesArg, PreparedData, prepare_for
from pipeline.errors import InputError
from pipeline.provenance import StageConfig, canonical_json
from pipeline.train import HIGHER_IS_BETTER, Progress, TrainConfig, fit

TRAIN_KEYS = set(TrainConfig.model_fields) - {"model", "model_cfg"}


class TuneConfig(StageConfig):
    trials: int = 20
    seed: int = 0  # sampler seed; each trial trains with the base config's seed
    timeout_s: float | None = None
    space: dict[str, list | tuple] | None = None  # None: the model class's search_space
    seeds: list[int] | None = None  # a trial scores the mean over these training seeds; None: the base seed
    workers: int = Field(1, ge=1)  # processes that train a trial's seeds in parallel


def suggest(trial: optuna.Trial, key: str, spec: list | tuple) -> Any:
    if isinstance(spec, list):
        if not spec:
            raise InputError(f"search space {key!r}: empty choice list")
        # Optuna's categorical values must be primitives; other values are chosen by index.
        if all(v is None or isinstance(v, bool | int | float | str) for v in spec):
            return trial.suggest_categorical(key, spec)
        return spec[trial.suggest_categorical(f"{key}__index", list(range(len(spec))))]
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        lo, hi = spec[0], spec[1]
        log = len(spec) == 3 and spec[2] == "log"
        if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
            return trial.suggest_int(key, lo, hi, log=log)
        return trial.suggest_float(key, float(lo), float(hi), log=log)
    raise InputError(f"search space {key!r}: expected a list of choices or (lo, hi[, 'log']), got {spec!r}")


def apply_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """A TrainConfig with the sampled values: trainer keys to the trainer, the rest to the model."""
    train_part = {k: v for k, v in params.items() if k in TRAIN_KEYS}
    model_part = {k: v for k, v in params.items() if k not in TRAIN_KEYS}
    return TrainConfig(**{**base.model_dump(), **train_part, "model_cfg": {**base.model_cfg, **model_part}})


_WORKER_PREP: PreparedData | None = None  # the data, sent once to each worker process


def _init_worker(prep: PreparedData, parent: int) -> None:
    from pipeline.procs import die_with_parent

    die_with_parent(parent)  # a killed tune leaves no trainer behind
    global _WORKER_PREP
    _WORKER_PREP = prep


def _fit_one(cfg: TrainConfig, prep: PreparedData | None = None) -> tuple[dict, int]:
    res = fit(cfg, prep if prep is not None else _WORKER_PREP)  # type: ignore[arg-type]
    return res.best_valid, res.best_epoch


def tune(
    base: TrainConfig,
    tcfg: TuneConfig,
    *,
    store: str | Path,
    dataset: str,
    features: FeaturesArg = None,
    out: str | Path,
    progress: Progress = print,
) -> dict:
    """Search, write the best TrainConfig to ``out`` (YAML) and return a summary (best value, trials)."""
    cls = get_model_class(base.model)
    space = tcfg.space if tcfg.space is not None else getattr(cls, "search_space", None)
    if not space:
        raise InputError(f"model {base.model!r} declares no search_space")
    prep = prepare_for(base, store, dataset, features)
    metric = base.select_metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if HIGHER_IS_BETTER[metric] else "minimize",
        sampler=optuna.samplers.TPESampler(seed=tcfg.seed),
    )
    trials: list[dict] = []
    seeds = tcfg.seeds or [base.seed]
    pool = (ProcessPoolExecutor(min(tcfg.workers, len(seeds)), mp_context=multiprocessing.get_context("spawn"),
                                initializer=_init_worker, initargs=(prep, os.getpid()))
            if tcfg.workers > 1 and len(seeds) > 1 else None)

    def objective(trial: optuna.Trial) -> float:
        params = {k: suggest(trial, k, spec) for k, spec in space.items()}
        cfg = apply_params(base, params)
        t0 = time.perf_counter()
        cfgs = [cfg.model_copy(update={"seed": s}) for s in seeds]
        runs = list(pool.map(_fit_one, cfgs)) if pool else [_fit_one(c, prep) for c in cfgs]
        values = [float(valid[metric]) for valid, _ in runs]
        epochs = [epoch for _, epoch in runs]
        value = statistics.mean(values)
        trial.set_user_attr("config", cfg.model_dump(mode="json"))
        trial.set_user_attr("best_epoch", epochs[0] if len(epochs) == 1 else epochs)
        row = {"trial": trial.number, "params": params, "valid": value, "best_epoch": trial.user_attrs["best_epoch"],
               "seconds": round(time.perf_counter() - t0, 2)}
        if len(seeds) > 1:
            row.update(seeds=seeds, valid_per_seed=values, valid_std=statistics.stdev(values))
        trials.append(row)
        if progress:
            spread = f" +- {row['valid_std']:.4f} over {len(seeds)} seeds" if len(seeds) > 1 else ""
            progress(f"trial {trial.number:3d} valid {metric} {value:.4f}{spread} (epoch {row['best_epoch']}) "
                     f"{canonical_json(params)}")
        return value

    try:
        study.optimize(objective, n_trials=tcfg.trials, timeout=tcfg.timeout_s)
    finally:
        if pool:
            pool.shutdown()
    best = study.best_trial
    chosen = TrainConfig(**best.user_attrs["config"])
    # The chosen config's epoch bound stays as given: `train` re-selects the epoch on valid.
    header = (f"# affectflow tune: {base.model} on {dataset}, {len(trials)} trials, sampler seed {tcfg.seed}, "
              f"training seeds {seeds}\n"
              f"# best valid {metric} {best.value:.4f} at trial {best.number} (epoch {best.user_attrs['best_epoch']})\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, header + yaml.safe_dump(chosen.model_dump(mode="json"), sort_keys=False))
    summary = {"model": base.model, "dataset": dataset, "metric": metric, "seeds": seeds, "best_value": best.value,
               "best_trial": best.number, "config": chosen.model_dump(mode="json"), "trials": trials}
    trials_path = out.with_suffix(".trials.json")
    write_text_atomic(trials_path, canonical_json(summary))
    return summary
