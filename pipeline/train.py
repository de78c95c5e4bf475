"""ONE training loop for every model.

Models differ only through the :class:`models.base.AffectModel` interface (``make_optimizers``,
``training_step``, ``loss``, ``predict``); this loop owns everything else: seeds (python, numpy, torch),
deterministic single-thread CPU runs, shuffling, per-epoch validation, early stopping on a VALID metric,
the best-epoch weights, and the run directory (:mod:`pipeline.checkpoint`). The epoch is always chosen
on valid: ``epochs`` is only an upper bound.
"""

from __future__ import annotations

import csv
import io
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from models.base import AffectModel
from models.registry import get_model_class
from pipeline.atomic import write_text_atomic
from pipeline.checkpoint import HISTORY, RunInfo, class_path, save_run
from pipeline.crossfit import warn_if_in_sample
from pipeline.data import FeaturesArg, SplitTensors, TrainSource, device_of, iterate_batches, prepare_for
from pipeline.errors import InputError, SplitError
from pipeline.evaluate import flatten_outputs, metrics_from_outputs
from pipeline.logs import get_logger, progress_bar
from pipeline.provenance import library_versions
from pipeline.train_config import TrainConfig

__all__ = ["FitResult", "TrainConfig", "device_of", "fit", "seed_everything", "train", "validate"]

Progress = Callable[[str], None] | None
log = get_logger("train")
_NO_VALID = {"loss": float("nan"), "accuracy": float("nan"), "f1_weighted": float("nan")}
HIGHER_IS_BETTER = {"accuracy": True, "f1_weighted": True, "f1_macro": True, "loss": False}


def seed_everything(seed: int, threads: int = 1) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class FitResult:
    model: AffectModel
    best_state: dict[str, torch.Tensor]
    history: list[dict]
    best_epoch: int
    best_valid: dict
    epochs_run: int
    stopped_early: bool
    wall_s: float
    device: str = "cpu"


@torch.no_grad()
def validate(model: AffectModel, st: SplitTensors, n_classes: int, label_names: list[str] | None = None) -> dict:
    """Eval-mode metrics and loss on a whole split."""
    out = model.predict(st.batch)
    was = model.training
    model.eval()
    try:
        loss = float(model.loss(st.batch, out))
    finally:
        model.train(was)
    metrics = metrics_from_outputs(flatten_outputs(st, out), n_classes, label_names)
    metrics["loss"] = loss
    return metrics


def _better(metric: str, new: dict, best: dict | None) -> bool:
    if best is None:
        return True
    a, b = new[metric], best[metric]
    if a != b:
        return a > b if HIGHER_IS_BETTER[metric] else a < b
    return metric != "loss" and new["loss"] < best["loss"]  # tie on a metric: lower valid loss wins


def build(cfg: TrainConfig, source: TrainSource) -> AffectModel:
    cls = get_model_class(cfg.model)
    try:
        model_cfg = cls.Config(**cfg.model_cfg)
    except Exception as e:
        raise InputError(f"invalid config for model {cfg.model!r}: {e}") from e
    return cls(model_cfg, dims=source.dims, n_classes=source.n_classes)


def _on(st: SplitTensors, device: torch.device) -> SplitTensors:
    return SplitTensors(st.split, st.batch.to(device), st.rows, st.segments, st.extras)


def fit(cfg: TrainConfig, source: TrainSource, progress: Progress = None, *, without_valid: bool = False) -> FitResult:
    """Train on ``train``, select the epoch on ``valid``; returns the model (on the CPU) at its best-epoch
    weights. ``source`` gives the splits as tensors (:class:`pipeline.data.TrainSource`): the loop is the
    same for every learned thing; models differ only through their :class:`AffectModel` methods.

    ``without_valid``: a source with no labelled valid split trains all ``epochs`` and keeps the last
    one (feature extractors trained on a train-only corpus, as bc-LSTM trained its 3D-CNN); otherwise an
    absent valid split is a :class:`pipeline.errors.SplitError`."""
    device = device_of(cfg.device)
    seed_everything(cfg.seed, cfg.threads)
    model = build(cfg, source).to(device)
    kind = model.input_kind
    # Both splits move to the device once; a no-op on the CPU (same tensors, same numbers).
    train_st = _on(source.split("train", kind), device)
    try:
        valid_st: SplitTensors | None = _on(source.split("valid", kind), device)
    except SplitError:
        if not without_valid:
            raise
        valid_st = None
    optimizers = model.make_optimizers()
    schedulers = model.make_schedulers(optimizers, cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    # BatchNorm cannot train on one sample; video-level batches are whole videos, so one is fine.
    min_size = 2 if kind == "utterance" else 1
    history: list[dict] = []
    best: dict | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, since_best, stopped = 0, 0, False
    t0 = time.perf_counter()
    bar = progress_bar(range(1, cfg.epochs + 1), desc=f"train {cfg.model}", unit="epoch")
    for epoch in bar:
        te = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        for batch in iterate_batches(train_st, cfg.batch_size, rng, min_size=min_size):
            for k, v in model.training_step(batch, optimizers).items():
                sums[k] = sums.get(k, 0.0) + v
            n_batches += 1
        for sch in schedulers:
            sch.step()
        valid = validate(model, valid_st, source.n_classes, source.class_names) if valid_st else _NO_VALID
        improved = valid_st is None or _better(cfg.select_metric, valid, best)
        if improved:
            best, best_epoch, since_best = valid, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        row = {"epoch": epoch, **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
               "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
               "valid_f1_weighted": valid["f1_weighted"], "best": improved, "seconds": time.perf_counter() - te}
        history.append(row)
        line = (f"epoch {epoch:3d}/{cfg.epochs} " + " ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                             if k.startswith("train_"))
                + f" valid_loss {valid['loss']:.4f} acc {valid['accuracy']:.4f} f1 {valid['f1_weighted']:.4f}"
                + (" *" if improved else ""))
        log.info("%s %s", cfg.model, line)
        if progress:
            progress(line)
        if since_best >= cfg.patience:  # never without a valid split (every epoch is the latest)
            stopped = True
            break
    bar.close()
    assert best is not None
    model.load_state_dict(best_state)
    model.cpu().eval()
    best_state = {k: v.cpu() for k, v in best_state.items()}
    return FitResult(model, best_state, history, best_epoch, best, len(history), stopped, time.perf_counter() - t0,
                     str(device))


def _history_csv(history: list[dict]) -> str:
    cols = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: ("true" if v is True else "false" if v is False else v) for k, v in row.items()})
    return buf.getvalue()


def run_info(cfg: TrainConfig, prep: TrainSource, res: FitResult, *, store: str | Path, dataset: str,
             features: Mapping[str, str]) -> RunInfo:
    model = res.model
    best_valid = {k: v for k, v in res.best_valid.items() if k in ("accuracy", "f1_weighted", "f1_macro", "loss", "n")}
    return RunInfo(
        model=cfg.model, class_path=class_path(type(model)), model_cfg=model.cfg.model_dump(mode="json"),
        train_config=cfg.model_dump(mode="json"), config_hash=cfg.config_hash(), input_kind=model.input_kind,
        dims=prep.dims, n_classes=prep.n_classes, label_kind=prep.label_kind,
        label_names=prep.class_names, store=str(store), dataset=dataset, features=dict(features),
        data_hash=prep.data_hash(), sources={m: s.model_dump() for m, s in prep.sources.items()},
        standardization={m: s.model_dump() for m, s in prep.stats.items()}, versions=library_versions(),
        best_epoch=res.best_epoch, epochs_run=res.epochs_run, stopped_early=res.stopped_early,
        best_valid=best_valid, select_metric=cfg.select_metric, wall_s=round(res.wall_s, 3),
        peak_rss_mb=round(peak_rss_mb(), 1), n_parameters=model.n_parameters(), device=res.device,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def train(
    cfg: TrainConfig,
    *,
    store: str | Path,
    dataset: str,
    features: FeaturesArg = None,
    out_dir: str | Path,
    progress: Progress = print,
    prepared: TrainSource | None = None,
    without_valid: bool = False,
) -> Path:
    """Train ``cfg.model`` on ``store/dataset`` and write the run directory ``out_dir`` (best epoch,
    safetensors, config and versions: :func:`pipeline.checkpoint.save_run`)."""
    prep = prepared or prepare_for(cfg, store, dataset, features)
    mapping = {m: s.feature_set for m, s in prep.sources.items()}
    warn_if_in_sample(store, dataset, list(mapping.values()))
    start = (f"train {cfg.model} on {dataset} {mapping} dims {prep.dims} classes {prep.n_classes} "
             f"seed {cfg.seed} device {cfg.device}")
    log.info(start)
    if progress:
        progress(start)
    res = fit(cfg, prep, progress, without_valid=without_valid)
    out = Path(out_dir)
    info = run_info(cfg, prep, res, store=store, dataset=dataset, features=mapping)
    save_run(out, res.model, info, res.best_state)
    write_text_atomic(out / HISTORY, _history_csv(res.history))
    end = (f"{cfg.model}: best epoch {res.best_epoch} of {res.epochs_run}: valid {cfg.select_metric} "
           f"{res.best_valid[cfg.select_metric]:.4f} -> {out}")
    log.info(end)
    if progress:
        progress(end)
    return out


def train_stage(out_dir: str | Path, *, config: dict, store: str | Path, dataset: str, features: FeaturesArg) -> Path:
    """A training stage of ``rebuild`` (:mod:`flows.graph`): :func:`train` from a JSON TrainConfig."""
    return train(TrainConfig(**config), store=store, dataset=dataset, features=features, out_dir=out_dir, progress=None)
