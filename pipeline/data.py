"""From the feature store to model-ready tensors.

* ``features`` is one feature-set name (all its modalities) or a mapping modality -> feature set, so an
  imported set and an extracted one can be combined. Rows are joined on ``segment_id``; the reference
  rows (labels, splits, order) are those of the largest set, and a modality whose set lacks a
  segment is *missing* for it (``Batch.present`` False), never zero data that looks real.
* Each modality is standardised on TRAIN statistics only; the statistics are saved with the run and
  reused unchanged for every other split (and for context features written later).
* Utterance-level models get ``[N, D]`` tensors; video-level models (``input_kind == "video"``) get the
  utterances of each video, ordered by ``segment_index``, padded to ``[V, U, D]`` with a ``mask``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from models.base import Batch, resolve_device
from models.modalities import ordered
from pipeline.errors import InputError, SplitError, StoreError
from pipeline.provenance import hash_json
from pipeline.store import SPLITS, feature_set_path, list_feature_sets, read_feature_set, read_meta
from pipeline.train_config import LabelKind, StandardizeMode

FeaturesArg = str | Mapping[str, str] | None
BINARY_CLASS_NAMES = ("negative", "positive")  # label_bin 0 / 1
_STD_FLOOR = 1e-6


class SourceInfo(BaseModel):
    """Where one modality came from: recorded in run.json as the data hash's ingredients."""

    feature_set: str
    source_hash: str
    producer: str
    n_rows: int


class ModalityStats(BaseModel):
    """Train-split standardisation of one modality (``mode`` 'none' = identity)."""

    mode: Literal["zscore", "none"]
    mean: list[float]
    std: list[float]


@dataclass
class JoinedData:
    """All rows of a dataset, one ``[N, D]`` array per modality, joined on ``segment_id``."""

    dataset: str
    segments: pd.DataFrame
    x: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    sources: dict[str, SourceInfo]
    label_names: list[str] | None = None

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(a.shape[1]) for m, a in self.x.items()}

    def data_hash(self) -> str:
        return hash_json({m: [s.feature_set, s.source_hash, s.n_rows] for m, s in self.sources.items()})

    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.segments["split"] == s).any()]


def resolve_features(store: str | Path, dataset: str, features: FeaturesArg) -> dict[str, str]:
    """Modality -> feature set. ``None``: the dataset's own (its only imported feature set)."""
    if isinstance(features, Mapping):
        if not features:
            raise InputError("empty features mapping")
        return {m: features[m] for m in ordered(list(features))}
    if features is None:
        metas = [meta for p, meta in list_feature_sets(store) if p.parent.name == dataset]
        own = [m for m in metas if not isinstance(m, StoreError) and m.producer.kind == "importer"]
        if len(own) != 1:
            names = sorted(m.feature_set for m in metas if not isinstance(m, StoreError))
            raise InputError(
                f"dataset {dataset!r}: cannot pick a default feature set among {names}; pass --features"
            )
        features = own[0].feature_set
    path = feature_set_path(store, dataset, features)
    if not path.is_file():
        raise StoreError(f"no feature set {features!r} for dataset {dataset!r}", path=path)
    meta = read_meta(path)
    return {m: features for m in ordered(list(meta.modalities))}


def _pool(values: np.ndarray | list, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequence modality -> one vector per segment (mean over time); an empty/None sequence is missing."""
    out = np.zeros((len(values), dim), np.float32)
    missing = np.zeros(len(values), bool)
    for i, s in enumerate(values):
        if s is None or len(s) == 0:
            missing[i] = True
        else:
            out[i] = np.asarray(s, np.float32).mean(0)
    return out, missing


def device_of(name: str) -> torch.device:
    """The torch device of a ``--device`` value (auto, cpu, cuda); an unavailable CUDA is an input error."""
    try:
        return resolve_device(name)
    except ValueError as e:
        raise InputError(str(e)) from e


def align_rows(ref: pd.DataFrame, seg: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The segment_id join: for each reference row, its row in ``seg`` (0 where absent) and whether
    ``seg`` has it. The one place rows of two tables are matched (feature sets, context runs)."""
    pos = pd.Series(np.arange(len(seg)), index=seg["segment_id"].to_numpy()).reindex(ref["segment_id"].to_numpy())
    ok = pos.notna().to_numpy()
    return np.where(ok, pos.fillna(0).to_numpy(), 0).astype(int), ok


def take_aligned(arr: np.ndarray, missing: np.ndarray, idx: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` float32 values and missing flags on the reference rows; an absent row is missing (zeros)."""
    return np.where(ok[:, None], np.asarray(arr)[idx], 0.0).astype(np.float32), ~ok | missing[idx]


def load_joined(
    store: str | Path, dataset: str, features: FeaturesArg, modalities: list[str] | None = None
) -> JoinedData:
    """Read and join the feature sets; every modality becomes ``[N, D]`` aligned to the reference rows."""
    mapping = resolve_features(store, dataset, features)
    if modalities is not None:
        absent = [m for m in modalities if m not in mapping]
        if absent:
            raise InputError(f"modalities {absent} not in features {mapping}")
        mapping = {m: mapping[m] for m in ordered(list(modalities))}
    by_set: dict[str, list[str]] = {}
    for m, fs in mapping.items():
        by_set.setdefault(fs, []).append(m)
    # The largest set gives the reference rows, so a set that lacks segments (e.g. an extraction with
    # quarantined items) marks them missing instead of dropping them for every modality.
    sizes = {fs: read_meta(feature_set_path(store, dataset, fs)).n_rows for fs in by_set}
    by_set = dict(sorted(by_set.items(), key=lambda kv: -sizes[kv[0]]))
    ref: pd.DataFrame | None = None
    x: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    sources: dict[str, SourceInfo] = {}
    label_names = None
    for fs_name, mods in by_set.items():
        fs = read_feature_set(store, dataset, fs_name, modalities=mods)
        label_names = label_names or fs.meta.label_names
        seg = fs.segments.reset_index(drop=True)
        if ref is None:
            ref = seg
        idx, ok = align_rows(ref, seg)
        if not ok.any():
            raise InputError(f"feature sets {list(by_set)} share no segment ids")
        if (seg["split"].to_numpy()[idx[ok]] != ref["split"].to_numpy()[ok]).any():
            raise InputError(f"feature set {fs_name!r} assigns different splits to the same segments")
        for m in mods:
            spec = fs.meta.modalities[m]
            arr, miss = (fs.features[m], fs.missing[m]) if spec.kind == "vector" else _pool(fs.features[m], spec.dim)
            x[m], missing[m] = take_aligned(arr, miss, idx, ok)
            sources[m] = SourceInfo(
                feature_set=fs_name, source_hash=fs.meta.source_hash,
                producer=f"{fs.meta.producer.kind}:{fs.meta.producer.name}", n_rows=fs.meta.n_rows,
            )
    assert ref is not None
    return JoinedData(dataset, ref, x, missing, sources, label_names)


# ------------------------------------------------------------------------------------------ labels


def resolve_label_kind(segments: pd.DataFrame, kind: LabelKind) -> Literal["bin", "class"]:
    if kind != "auto":
        return kind
    return "class" if segments["label_class"].notna().any() else "bin"


def labels(data: JoinedData, kind: Literal["bin", "class"]) -> tuple[np.ndarray, int]:
    """Integer labels (-1 where unlabelled) and the number of classes."""
    col = data.segments["label_bin" if kind == "bin" else "label_class"]
    if not col.notna().any():
        raise InputError(f"dataset {data.dataset!r} has no {'label_bin' if kind == 'bin' else 'label_class'} labels")
    y = col.fillna(-1).to_numpy().astype(np.int64)
    n = 2 if kind == "bin" else max(int(y.max()) + 1, len(data.label_names or []))
    return y, n


# ------------------------------------------------------------------------------------ standardise


def fit_standardizer(data: JoinedData, mode: StandardizeMode) -> dict[str, ModalityStats]:
    """Per-modality statistics on the TRAIN rows where the modality is present.

    ``auto``: z-score, except a modality whose train values all lie in [-1, 1] (tanh outputs such as
    UCLN context features, which ARGF's tanh decoders reconstruct): those are left as they are.
    """
    train = (data.segments["split"] == "train").to_numpy()
    if not train.any():
        raise SplitError(f"dataset {data.dataset!r} has no train split to standardise on")
    stats = {}
    for m, arr in data.x.items():
        rows = arr[train & ~data.missing[m]]
        if not len(rows):
            raise InputError(f"modality {m!r} is missing for every train row")
        m_mode = mode
        if mode == "auto":
            m_mode = "none" if np.abs(rows).max() <= 1.0 else "zscore"
        if m_mode == "none":
            stats[m] = ModalityStats(mode="none", mean=[0.0] * arr.shape[1], std=[1.0] * arr.shape[1])
        else:
            std = rows.std(0)
            std = np.where(std < _STD_FLOOR, 1.0, std)  # constant dims stay constant (0), not inf
            stats[m] = ModalityStats(mode="zscore", mean=rows.mean(0).tolist(), std=std.tolist())
    return stats


def apply_standardizer(data: JoinedData, stats: Mapping[str, ModalityStats]) -> dict[str, np.ndarray]:
    out = {}
    for m, arr in data.x.items():
        if m not in stats:
            raise InputError(f"no standardisation statistics for modality {m!r}")
        s = stats[m]
        if len(s.mean) != arr.shape[1]:
            raise InputError(f"modality {m!r}: statistics for dim {len(s.mean)}, data has dim {arr.shape[1]}")
        z = (arr - np.asarray(s.mean, np.float32)) / np.asarray(s.std, np.float32)
        out[m] = np.where(data.missing[m][:, None], 0.0, z).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------- tensors


@dataclass
class SplitTensors:
    """One split as a single :class:`Batch`, plus how its rows map back to the segment table.

    ``rows`` holds the segment-table row of every sample: ``[N]`` for utterance-level data, ``[V, U]``
    (-1 = padding) for video-level data.
    """

    split: str
    batch: Batch
    rows: np.ndarray
    segments: pd.DataFrame
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.batch.size

    def flat_rows(self) -> np.ndarray:
        """Segment-table rows of the real samples, in the order of masked/flattened outputs."""
        return self.rows[self.rows >= 0] if self.rows.ndim == 2 else self.rows


def split_tensors(
    data: JoinedData,
    xs: Mapping[str, np.ndarray],
    y: np.ndarray,
    split: str,
    input_kind: Literal["utterance", "video"],
    require_labels: bool = True,
) -> SplitTensors:
    """``require_labels=False`` keeps unlabelled rows too (label 0 placeholder), e.g. to write features."""
    seg = data.segments
    sel = np.flatnonzero((seg["split"] == split).to_numpy() & ((y >= 0) | (not require_labels)))
    y = np.maximum(y, 0)
    if not len(sel):
        have = data.splits()
        raise SplitError(f"split {split!r} is absent from {data.dataset} (or unlabelled); has {have}")
    score_col = seg["score"].to_numpy(dtype=np.float32, na_value=np.nan)
    if input_kind == "utterance":
        batch = Batch(
            x={m: torch.from_numpy(xs[m][sel]) for m in xs},
            y=torch.from_numpy(y[sel]),
            present={m: torch.from_numpy(~data.missing[m][sel]) for m in xs},
            score=torch.from_numpy(score_col[sel]),
        )
        return SplitTensors(split, batch, sel, seg)
    # Video level: group rows by video, keep the file order of videos, order utterances by index.
    sub = seg.iloc[sel].assign(_row=sel)
    order_key = sub["segment_index"] if sub["segment_index"].notna().all() else sub["_row"]
    sub = sub.assign(_key=order_key.to_numpy()).sort_values(["_key", "_row"], kind="stable")
    videos = list(dict.fromkeys(seg["video_id"].to_numpy()[sel]))
    groups = {v: g["_row"].to_numpy() for v, g in sub.groupby("video_id", sort=False)}
    n_u = max(len(g) for g in groups.values())
    rows = np.full((len(videos), n_u), -1, np.int64)
    for i, v in enumerate(videos):
        rows[i, : len(groups[v])] = groups[v]
    mask = rows >= 0
    r = np.where(mask, rows, 0)
    batch = Batch(
        x={m: torch.from_numpy(xs[m][r] * mask[..., None]) for m in xs},
        y=torch.from_numpy(np.where(mask, y[r], 0)),
        present={m: torch.from_numpy(~data.missing[m][r] & mask) for m in xs},
        mask=torch.from_numpy(mask),
        score=torch.from_numpy(np.where(mask, score_col[r], np.nan).astype(np.float32)),
    )
    return SplitTensors(split, batch, rows, seg, {"videos": videos})


def slice_batch(batch: Batch, idx: np.ndarray | slice) -> Batch:
    t = torch.as_tensor(idx) if isinstance(idx, np.ndarray) else idx
    return Batch(
        {m: v[t] for m, v in batch.x.items()},
        batch.y[t],
        {m: v[t] for m, v in batch.present.items()},
        None if batch.mask is None else batch.mask[t],
        None if batch.score is None else batch.score[t],
    )


def iterate_batches(
    st: SplitTensors, batch_size: int, rng: np.random.Generator | None = None, min_size: int = 1
) -> Iterator[Batch]:
    """Mini-batches over the samples (utterances or videos); shuffled when ``rng`` is given.

    Batches smaller than ``min_size`` are dropped (BatchNorm cannot train on a batch of one).
    """
    n = len(st)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        if len(idx) >= min_size:
            yield slice_batch(st.batch, idx)


# ------------------------------------------------------------------------------------------ public


@dataclass
class PreparedData:
    """Joined, labelled and standardised data, ready to cut into splits."""

    joined: JoinedData
    xs: dict[str, np.ndarray]
    y: np.ndarray
    n_classes: int
    label_kind: Literal["bin", "class"]
    stats: dict[str, ModalityStats]

    @property
    def class_names(self) -> list[str] | None:
        """Names of the predicted classes: the dataset's class names, or negative/positive for binary
        sentiment (``label_bin`` 1 = positive score)."""
        return list(BINARY_CLASS_NAMES) if self.label_kind == "bin" else self.joined.label_names

    def split(self, name: str, input_kind: Literal["utterance", "video"], require_labels: bool = True) -> SplitTensors:
        return split_tensors(self.joined, self.xs, self.y, name, input_kind, require_labels)

    # What the trainer reads of its data source (:class:`TrainSource`).
    @property
    def dims(self) -> dict[str, int]:
        return self.joined.dims

    @property
    def sources(self) -> dict[str, SourceInfo]:
        return self.joined.sources

    def data_hash(self) -> str:
        return self.joined.data_hash()


class TrainSource(Protocol):
    """What :func:`pipeline.train.fit` trains on: :class:`PreparedData` for the fusion models and UCLN,
    a word-sequence source for the text-CNN (:mod:`pipeline.text_cnn`). One loop, several sources."""

    n_classes: int
    label_kind: str
    stats: dict[str, ModalityStats]

    @property
    def dims(self) -> dict[str, int]: ...
    @property
    def class_names(self) -> list[str] | None: ...
    @property
    def sources(self) -> dict[str, SourceInfo]: ...
    def data_hash(self) -> str: ...
    def split(self, name: str, input_kind: Literal["utterance", "video"], require_labels: bool = True) -> SplitTensors: ...


def prepare(
    store: str | Path,
    dataset: str,
    features: FeaturesArg,
    *,
    modalities: list[str] | None = None,
    label_kind: LabelKind = "auto",
    standardize: StandardizeMode = "auto",
    stats: Mapping[str, ModalityStats] | None = None,
) -> PreparedData:
    """Join, label and standardise. ``stats`` given (a saved run): reuse them, never refit.
    For a training run use :func:`prepare_for` (the config decides modalities, labels, standardisation)."""
    joined = load_joined(store, dataset, features, modalities)
    kind = resolve_label_kind(joined.segments, label_kind)
    y, n_classes = labels(joined, kind)
    st = dict(stats) if stats is not None else fit_standardizer(joined, standardize)
    return PreparedData(joined, apply_standardizer(joined, st), y, n_classes, kind, st)


def prepare_for(cfg, store: str | Path, dataset: str, features: FeaturesArg) -> PreparedData:
    """The data a :class:`pipeline.train_config.TrainConfig` trains on."""
    return prepare(store, dataset, features, modalities=cfg.modalities, label_kind=cfg.label,
                   standardize=cfg.standardize)


def prepare_from_run(info, *, store: str | Path | None = None) -> PreparedData:
    """The data of a saved run (:class:`pipeline.checkpoint.RunInfo`): its features, modalities, labels
    and TRAIN statistics, reused unchanged. ``store`` overrides the recorded store location."""
    prep = prepare(
        store or info.store, info.dataset, info.features, modalities=list(info.dims),
        label_kind=info.label_kind, stats={m: ModalityStats(**s) for m, s in info.standardization.items()},
    )
    if prep.joined.dims != info.dims:
        raise InputError(f"data dims {prep.joined.dims} differ from the run's {info.dims}")
    return prep


def load_split(source, split: str, *, store: str | Path | None = None, input_kind: str | None = None) -> SplitTensors:
    """One split as tensors, from a saved run's :class:`pipeline.checkpoint.RunInfo` or from a
    ``(store, dataset, features)`` tuple (then statistics are fitted on its train split)."""
    if isinstance(source, tuple):
        st_store, dataset, features = source
        return prepare(st_store, dataset, features).split(split, input_kind or "utterance")  # type: ignore[arg-type]
    return prepare_from_run(source, store=store).split(split, input_kind or source.input_kind)
