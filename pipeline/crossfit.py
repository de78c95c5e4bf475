"""Cross-fitting for supervised feature producers (UCLN, text-CNN, C3D): no training row is encoded by a
network that saw its label.

A supervised producer fitted on the training videos and then run over them writes features that encode
those videos' labels (the flaw of MOSI's published features, measured in docs/audit.md). Cross-fitting
(K folds, grouped by video) removes it: each training video's features come from the fold model that
never saw that video. Rows outside train (valid, test) come from the average of the K fold models
(``heldout="average"``, the default) or from a model fitted on all training videos (``heldout="full"``).
The average is the default because it is measured to be the safer one (docs/audit.md, 5 feature seeds
of bench/clean_chain.py): the training rows then come from the same models as the rows they are
compared with, whereas a full model whose early-stopped epoch differs from the folds' writes valid rows
on another scale, which the audit flags and which cost up to 23 points of valid accuracy.

This module is generic: a producer is two callables, ``fit(train_videos) -> model`` and
``produce(model, rows) -> [len(rows), D]``; the producers' own modules hold the small adapters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import pandas as pd

from pipeline.errors import InputError

if TYPE_CHECKING:  # pipeline.data imports torch; the CLI reads CROSS_FIT_DEFAULT from here at start-up
    from pipeline.data import JoinedData, PreparedData, StandardizeMode

P = TypeVar("P")
Heldout = Literal["full", "average"]
HELDOUT_DEFAULT: Heldout = "average"
CROSS_FIT_DEFAULT = 5  # folds used by `affectflow run` unless told otherwise
# Producers that learn from labels: their features of the rows they were fitted on are in-sample.
SUPERVISED_PRODUCERS = frozenset({"ucln", "text_cnn", "c3d"})
# Split name of the rows a fold leaves out of training: not a store split, so no trainer reads it.
OUT_OF_FOLD = "_out_of_fold"


class InSampleFeaturesWarning(UserWarning):
    """A model is trained on features that a supervised producer wrote for its own training rows."""


def check_cross_fit(k: int) -> int:
    """``cross_fit`` is 0 (in-sample) or a number of folds K >= 2."""
    if k != 0 and k < 2:
        raise InputError(f"cross_fit must be 0 (in-sample) or a number of folds >= 2; got {k}")
    return k


def video_folds(segments: pd.DataFrame, k: int, seed: int) -> dict[str, int]:
    """Training video -> fold in ``0..k-1`` (a seeded shuffle, then round robin: sizes differ by <= 1)."""
    train = segments["split"].to_numpy() == "train"
    videos = list(dict.fromkeys(segments["video_id"].to_numpy()[train]))
    if k < 2 or k > len(videos):
        raise InputError(f"cross_fit needs 2 <= K <= the number of training videos ({len(videos)}); got K = {k}")
    order = np.random.default_rng(seed).permutation(len(videos))
    return {videos[j]: i % k for i, j in enumerate(order)}


def cross_fit(
    segments: pd.DataFrame,
    *,
    k: int,
    seed: int,
    fit: Callable[[list[str]], P],
    produce: Callable[[P, np.ndarray], np.ndarray],
    heldout: Heldout = HELDOUT_DEFAULT,
    full: P | None = None,
) -> tuple[np.ndarray, dict]:
    """Features for every row of ``segments`` (``[N, D]``) and the record of how they were made.

    ``full``: an already fitted all-training-videos model for the non-train rows (else one is fitted).
    A corpus with fewer training videos than ``k`` gets one fold per video (leave one video out).
    """
    n_videos = segments.loc[segments["split"] == "train", "video_id"].nunique()
    requested, k = k, min(k, n_videos)
    folds = video_folds(segments, k, seed)
    video = segments["video_id"].to_numpy()
    is_train = segments["split"].to_numpy() == "train"
    other = np.flatnonzero(~is_train)
    out: np.ndarray | None = None

    def put(rows: np.ndarray, feats: np.ndarray, weight: float | None = None) -> None:
        nonlocal out
        if out is None:
            out = np.zeros((len(segments), feats.shape[1]), np.float32)
        out[rows] = feats if weight is None else out[rows] + weight * feats

    for f in range(k):
        model = fit([v for v, g in folds.items() if g != f])
        rows = np.flatnonzero(is_train & np.isin(video, [v for v, g in folds.items() if g == f]))
        put(rows, produce(model, rows))
        if heldout == "average" and len(other):
            put(other, produce(model, other), 1.0 / k)
    if heldout == "full" and len(other):
        put(other, produce(full if full is not None else fit(list(folds)), other))
    assert out is not None
    info = {"k": k, "seed": seed, "groups": "video", "heldout": heldout, "n_train_videos": len(folds)}
    if requested != k:
        info["k_requested"] = requested
    return out, info


# ------------------------------------------------------------------ adapters for PreparedData trainers


def relabel(joined: JoinedData, rows: np.ndarray, split: str) -> JoinedData:
    """A copy of ``joined`` whose ``rows`` carry split name ``split`` (features shared, not copied)."""
    seg = joined.segments.copy()
    seg.loc[seg.index[rows], "split"] = split
    return replace(joined, segments=seg)


def fold_prepared(prep: PreparedData, train_videos: Sequence[str], standardize: StandardizeMode) -> PreparedData:
    """``prep`` restricted to ``train_videos`` for training: the other training rows leave the train
    split, and standardisation statistics are refitted on the fold's training rows only."""
    from pipeline.data import apply_standardizer, fit_standardizer

    seg = prep.joined.segments
    drop = np.flatnonzero((seg["split"].to_numpy() == "train") & ~np.isin(seg["video_id"].to_numpy(), list(train_videos)))
    joined = relabel(prep.joined, drop, OUT_OF_FOLD)
    stats = fit_standardizer(joined, standardize)
    return replace(prep, joined=joined, xs=apply_standardizer(joined, stats), stats=stats)


# --------------------------------------------------------- adapters for producers that write feature sets


def cross_fit_feature_set(
    store: str | Path,
    dataset: str,
    source: str,
    *,
    k: int,
    seed: int,
    heldout: Heldout = HELDOUT_DEFAULT,
    full: str,
    modality: str,
    produce_set: Callable[[Path, str, str], object],
) -> Path:
    """Cross-fit a producer whose only interface is "read feature set ``source`` from a store, train on its
    train rows, write feature set ``out`` for every row" (the text-CNN, the C3D).

    Each fold runs ``produce_set(tmp_store, source, out)`` on a copy of ``source`` in a temporary store
    where the fold's held-out training videos are moved to the test split, which no producer trains or
    selects on. The already written feature set ``full`` (the all-training-videos model's) is then
    rewritten: training rows from the fold models that did not see them, the other rows from the fold
    average (or kept, ``heldout="full"``); its metadata records ``extra["cross_fit"]``.
    """
    import tempfile

    from pipeline.store import read_feature_set, write_feature_set

    src = read_feature_set(store, dataset, source)
    done = read_feature_set(store, dataset, full)
    if list(done.segments["segment_id"]) != list(src.segments["segment_id"]):
        raise InputError(f"{dataset}/{full} does not have the rows of {dataset}/{source}, in order")
    video = src.segments["video_id"].to_numpy()
    with tempfile.TemporaryDirectory(prefix="crossfit-") as tmp:

        def fit(videos: list[str]) -> np.ndarray:
            seg = src.segments.copy()
            seg.loc[(seg["split"] == "train").to_numpy() & ~np.isin(video, videos), "split"] = "test"
            write_feature_set(tmp, type(src)(src.meta, seg, src.features, src.missing))
            produce_set(Path(tmp), source, "fold")
            return read_feature_set(tmp, dataset, "fold", modalities=[modality]).features[modality]

        feats, info = cross_fit(src.segments, k=k, seed=seed, heldout=heldout, fit=fit,
                                produce=lambda arr, rows: arr[rows], full=done.features[modality])
    out = np.where(done.missing[modality][:, None], 0.0, feats).astype(np.float32)
    meta = done.meta.model_copy(update={"extra": {**done.meta.extra, "cross_fit": info}})
    return write_feature_set(store, type(done)(meta, done.segments, {**done.features, modality: out}, done.missing))


# ----------------------------------------------------------------------------- metadata and warnings


def in_sample_producers(metas: Sequence) -> list[str]:
    """``producer (dataset/feature_set)`` for each feature set written in-sample by a supervised producer.

    A feature set records ``extra["cross_fit"]`` (``{"k": K, ...}``) when it was cross-fitted."""
    out = []
    for meta in metas:
        if meta.producer.kind == "model" and meta.producer.name in SUPERVISED_PRODUCERS \
                and not (meta.extra or {}).get("cross_fit"):
            out.append(f"{meta.producer.name} ({meta.dataset}/{meta.feature_set})")
    return sorted(set(out))


def warn_if_in_sample(store: str | Path, dataset: str, feature_sets: Sequence[str]) -> list[str]:
    """Warn (``InSampleFeaturesWarning``) when any of the feature sets is in-sample; returns the names."""
    from pipeline.store import feature_set_path, read_meta

    names = in_sample_producers([read_meta(feature_set_path(store, dataset, fs)) for fs in sorted(set(feature_sets))])
    if names:
        warnings.warn(
            f"training on in-sample supervised features from {', '.join(names)}: their training rows were "
            "encoded by a network fitted on those rows' labels; cross-fit them (cross_fit: K) for honest stacking",
            InSampleFeaturesWarning, stacklevel=2,
        )
    return names
