"""UCLN context features: one UCLN per modality, run over every split, written back to the store.

ARGF's first stage (and bc-LSTM's): each modality's utterance features go through their own trained
UCLN, whose ``context`` output (``d``-dim, tanh) becomes that modality's feature in a new feature set.
Three UCLN runs (text, audio, video) give one feature set with three modalities. Its metadata records
the lineage: source feature sets (with their content hashes), each run's config and checkpoint sha256.

Without cross-fitting (as in the original setting) the train videos' context features come from a network
fitted on those same videos' labels; valid/test videos were unseen by it. With ``cross_fit=K``
(:mod:`pipeline.crossfit`, the default of ``affectflow run``) each training video's context comes from
the fold UCLN that never saw it, and the metadata records ``extra["cross_fit"]``.
A segment whose input modality is missing stays missing in the output (no made-up context).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.registry import get_model_class
from pipeline.checkpoint import load_run
from pipeline.crossfit import HELDOUT_DEFAULT, Heldout, cross_fit, fold_prepared, relabel
from pipeline.data import (
    FeaturesArg,
    PreparedData,
    align_rows,
    prepare_from_run,
    resolve_features,
    split_tensors,
    take_aligned,
)
from pipeline.errors import InputError
from pipeline.provenance import hash_json
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set
from pipeline.train import Progress, TrainConfig, fit, train


@torch.no_grad()
def _context_rows(model, prep: PreparedData, rows: np.ndarray) -> np.ndarray:  # noqa: ANN001 - a UCLN
    """Context output of ``rows`` (segment-table rows, whole videos), in the order of ``rows``."""
    joined = relabel(prep.joined, rows, "_context")
    st = split_tensors(joined, prep.xs, prep.y, "_context", "video", require_labels=False)
    ctx = model.predict(st.batch)["context"][st.batch.mask].numpy()
    out = np.zeros((len(rows), ctx.shape[1]), np.float32)
    out[pd.Index(rows).get_indexer(st.flat_rows())] = ctx
    return out


def _cross_fit_context(model, info, prep: PreparedData, k: int, heldout: Heldout) -> tuple[np.ndarray, dict]:  # noqa: ANN001
    """Context of every row with training rows from fold UCLNs (same config and seed as the run)."""
    cfg = TrainConfig(**info.train_config)

    def fit_fold(videos: list[str]) -> tuple:
        fold = fold_prepared(prep, videos, cfg.standardize)
        return fit(cfg, fold).model, fold

    return cross_fit(prep.joined.segments, k=k, seed=cfg.seed, heldout=heldout, full=(model, prep), fit=fit_fold,
                     produce=lambda mp, rows: _context_rows(mp[0], mp[1], rows))


@torch.no_grad()
def _context_of_run(run_dir: Path, store: str | Path | None, cross_fit_k: int = 0,
                    heldout: Heldout = HELDOUT_DEFAULT) -> tuple[str, pd.DataFrame, np.ndarray, np.ndarray, dict]:
    model, info = load_run(run_dir)
    if info.input_kind != "video":
        raise InputError(f"{run_dir}: model {info.model!r} is utterance-level; context needs a video-level UCLN run")
    modality = getattr(model.cfg, "modality", None)
    if modality is None or modality not in info.dims:
        raise InputError(f"{run_dir}: model {info.model!r} has no single input modality; expected a UCLN run")
    prep = prepare_from_run(info, store=store)
    seg = prep.joined.segments
    out = None
    for split in prep.joined.splits():
        st = prep.split(split, "video", require_labels=False)
        res = model.predict(st.batch)
        if "context" not in res:
            raise InputError(f"{run_dir}: model {info.model!r} returns no 'context' output")
        ctx = res["context"][st.batch.mask].numpy()
        if out is None:
            out = np.zeros((len(seg), ctx.shape[1]), np.float32)
        out[st.flat_rows()] = ctx
    assert out is not None
    crossfit_info = None
    if cross_fit_k:
        with torch.enable_grad():  # the fold UCLNs train inside this no-grad function
            out, crossfit_info = _cross_fit_context(model, info, prep, cross_fit_k, heldout)
    lineage = {
        "run": str(run_dir), "model": info.model, "model_cfg": info.model_cfg, "train_config": info.train_config,
        "checkpoint_sha256": info.checkpoint_sha256, "best_epoch": info.best_epoch,
        "source": info.sources[modality], "label_names": prep.joined.label_names, "cross_fit": crossfit_info,
    }
    return modality, seg, out, prep.joined.missing[modality].copy(), lineage


def write_context_features(
    run_dir: str | Path | Mapping[str, str | Path],
    *,
    store: str | Path,
    dataset: str,
    feature_set: str,
    source_store: str | Path | None = None,
    cross_fit: int = 0,
    heldout: Heldout = HELDOUT_DEFAULT,
) -> Path:
    """Run trained UCLN(s) over all splits and write their context output as ``store/dataset/feature_set``.

    ``run_dir`` is one UCLN run or a mapping modality -> run (three UCLNs -> one set with three
    modalities). ``source_store`` overrides where the runs' input features are read from.
    ``cross_fit=K`` (>= 2): training rows from K fold UCLNs grouped by video (0: in-sample).
    """
    runs = [Path(run_dir)] if isinstance(run_dir, str | Path) else [Path(p) for p in run_dir.values()]
    ref: pd.DataFrame | None = None
    feats, missing, lineage, specs = {}, {}, {}, {}
    for run in runs:
        m, seg, ctx, miss, lin = _context_of_run(run, source_store, cross_fit, heldout)
        if m in feats:
            raise InputError(f"two UCLN runs for modality {m!r}")
        if ref is None:
            ref = seg
        ctx, miss = take_aligned(ctx, miss, *align_rows(ref, seg))  # this run's rows on the reference rows
        feats[m], missing[m], lineage[m] = ctx, miss, lin
        specs[m] = ModalitySpec(kind="vector", dim=ctx.shape[1], description=f"UCLN context of {m} ({lin['source']['feature_set']})")
    assert ref is not None
    config = {m: {k: lineage[m][k] for k in ("model_cfg", "train_config", "checkpoint_sha256", "best_epoch", "cross_fit")}
              for m in feats}
    sources = sorted({f"{dataset}/{lin['source']['feature_set']}@{lin['source']['source_hash']}" for lin in lineage.values()})
    meta = make_meta(
        dataset=dataset, feature_set=feature_set, modalities=specs,
        producer=Producer.of("model", "ucln", config),
        source_hash=hash_json({m: [lin["checkpoint_sha256"], lin["source"]] for m, lin in lineage.items()}),
        # The class names travel with the labels, so models trained on the context name their classes too.
        label_names=next((lin["label_names"] for lin in lineage.values() if lin["label_names"]), None),
        lineage=sources, extra={"runs": {m: lin["run"] for m, lin in lineage.items()},
                                "cross_fit": next(iter(lineage.values()))["cross_fit"]},
    )
    keep = [c for c in ("video_id", "segment_id", "segment_index", "start", "end", "split", "label_bin",
                        "label_class", "score", "transcript") if c in ref.columns]
    return write_feature_set(store, FeatureSet(meta, ref[keep].copy(), feats, missing))


def train_ucln_per_modality(
    cfg: TrainConfig,
    *,
    store: str | Path,
    dataset: str,
    features: FeaturesArg = None,
    out_dir: str | Path,
    write_context: str | None = None,
    progress: Progress = print,
    cross_fit: int = 0,
) -> dict[str, Path]:
    """One UCLN per modality (``out_dir/<modality>``), each trained alone on its modality; optionally
    write the three context outputs as one feature set ``write_context``. Returns modality -> run dir."""
    mapping = resolve_features(store, dataset, features)
    mods = cfg.modalities or list(mapping)
    runs: dict[str, Path] = {}
    for m in mods:
        runs[m] = train(cfg.per_modality(m), store=store, dataset=dataset, features=mapping,
                        out_dir=Path(out_dir) / m, progress=progress)
    if write_context:
        path = write_context_features(runs, store=store, dataset=dataset, feature_set=write_context, cross_fit=cross_fit)
        if progress:
            progress(f"context features -> {path}")
    return runs


def train_runs(cfg: TrainConfig, *, write_context: str | None = None, **kw: Any) -> dict[str, Path]:
    """The one place that decides per-modality training: a model class that declares ``per_modality``
    (UCLN) trains one run per modality (``{modality: run}``, optional context features); any other model
    one run (``{"run": out_dir}``). ``kw``: :func:`train_ucln_per_modality`'s. Used by ``affectflow train``
    and the ``train_model`` flow."""
    if get_model_class(cfg.model).per_modality:
        return train_ucln_per_modality(cfg, write_context=write_context, **kw)
    if write_context:
        raise InputError(f"--write-context / --cross-fit are for per-modality context models (ucln), not {cfg.model!r}")
    kw.pop("cross_fit", None)  # a context-feature option: a single run has no context features
    return {"run": train(cfg, **kw)}
