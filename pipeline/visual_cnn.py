"""Train the 3D-CNN on stored face-crop clips (labelled train rows, as bc-LSTM trained its 3D-CNN) and
write its penultimate-layer activations as a new feature set.

Flow: ``build_crop_store`` (standalone path; the generic extraction driver writes the same column) ->
``train_c3d`` -> ``write_c3d_features``. Training is the one trainer (:func:`pipeline.train.train`, model
``c3d``: augmentation and the cosine schedule are the model's own overrides); the model directory is a
run directory (``checkpoint.safetensors``, ``run.json``, ``history.csv``). No pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from models.c3d import C3D
from pipeline.checkpoint import RunInfo, load_run
from pipeline.data import PreparedData, SplitTensors, device_of, prepare_for, slice_batch
from pipeline.errors import InputError, ItemError, SplitError, StoreError
from pipeline.extract import quarantine_record
from pipeline.extractors.base import MediaItem
from pipeline.extractors.c3d_crops import FaceCropsConfig, FaceCropsExtractor
from pipeline.provenance import StageConfig, hash_json
from pipeline.store import (
    FeatureSet,
    ModalitySpec,
    Producer,
    feature_set_path,
    make_meta,
    read_feature_set,
    read_meta,
    write_feature_set,
)
from pipeline.train import TrainConfig, train
from pipeline.train_config import Device

# ------------------------------------------------------------------------------- standalone crops


def build_crop_store(
    items: Sequence[MediaItem],
    segments: pd.DataFrame,
    *,
    store: str | Path,
    dataset: str,
    feature_set: str,
    cfg: FaceCropsConfig | None = None,
    label_names: Sequence[str] | None = None,
    modality: str = "video",
) -> tuple[Path, list[dict]]:
    """Run the crop extractor over ``items`` and write one row per segment of ``segments``.

    ``segments`` has ``segment_id, video_id, split`` (+ optional labels); each item's ``segments`` gives
    its segments' times. Items that fail are quarantined (returned as records) and their rows written as
    missing; the rest completes.
    """
    cfg = cfg or FaceCropsConfig()
    ex = FaceCropsExtractor(cfg)
    by_id: dict[str, np.ndarray] = {}
    quarantine: list[dict] = []
    for it in items:
        try:
            tf = ex.extract(it, None).features
        except ItemError as e:
            quarantine.append(quarantine_record(it.item_id, e.stage, str(e), modality))
            continue
        ids = it.segments["segment_id"].astype(str).to_numpy()
        win = it.segments[["start", "end"]].to_numpy(np.float64)
        for iv, vec in zip(tf.intervals, tf.values, strict=True):
            hit = np.flatnonzero(np.isclose(win, iv).all(1) | np.isnan(win).any(1))
            for h in hit[:1]:
                by_id[ids[h]] = vec
    seg = segments.reset_index(drop=True)
    missing = np.array([sid not in by_id for sid in seg["segment_id"].astype(str)])
    if missing.all():
        raise InputError(f"no segment produced a face-crop clip ({len(quarantine)} items quarantined)")
    arr = np.zeros((len(seg), cfg.dim), np.float32)
    for i, sid in enumerate(seg["segment_id"].astype(str)):
        if sid in by_id:
            arr[i] = by_id[sid]
    meta = make_meta(
        dataset=dataset, feature_set=feature_set,
        modalities={modality: ModalitySpec(kind="vector", dim=cfg.dim,
                                           description=f"gray face crops {cfg.clip_len}x{cfg.track.crop_size}^2, [0,1]")},
        producer=Producer.of("extractor", "face_crops", cfg.model_dump(mode="json")),
        source_hash=hash_json(sorted((it.item_id, str(it.path)) for it in items)),
        label_names=label_names,
        extra={"clip_len": cfg.clip_len, "crop_size": cfg.track.crop_size, "quarantine": quarantine},
    )
    path = write_feature_set(store, FeatureSet(meta, seg, {modality: arr}, {modality: missing}))
    return path, quarantine


# ------------------------------------------------------------------------------------------ train


class C3DTrainConfig(StageConfig):
    crops_feature_set: str
    modality: str = "video"
    label: Literal["class", "bin"] = "class"
    model: dict = Field(default_factory=dict, description="C3DConfig fields (clip_len/crop_size read from the store)")
    epochs: int = Field(60, ge=1)  # MEAD, unseen actor, 8 classes: 30 epochs 35% valid, 60 epochs 58% (3 seeds)
    patience: int = Field(60, ge=1)  # cosine decay: late epochs are the best ones, so stop late if at all
    batch_size: int = Field(16, ge=1)
    augment: bool = True  # random horizontal flip + 2-pixel shift: tiny corpora overfit fast
    cosine: bool = True  # cosine learning-rate decay to 0 over the epochs
    seed: int = 0
    device: Device = "auto"
    cross_fit: int = Field(0, description="K >= 2: train rows' features from K fold models grouped by video")


def crop_geometry(meta, modality: str) -> tuple[int, int]:  # noqa: ANN001 - FeatureSetMeta
    """(clip_len, crop_size) of a stored crops column: from ``build_crop_store``'s metadata, or from the
    extraction driver's per-column extractor config; the column's dim must agree."""
    extra = meta.extra or {}
    if "clip_len" in extra and "crop_size" in extra:
        geo = (int(extra["clip_len"]), int(extra["crop_size"]))
    else:
        ext = (extra.get("extractors") or {}).get(modality) or {}
        if ext.get("extractor") != "face_crops":
            raise StoreError(f"column {modality!r} of {meta.dataset}/{meta.feature_set} was not written by the "
                             f"face_crops extractor (producer: {ext.get('extractor', meta.producer.name)})")
        c = FaceCropsConfig(**ext["config"])
        geo = (c.clip_len, c.track.crop_size)
    dim = meta.modalities[modality].dim
    if geo[0] * geo[1] ** 2 != dim:
        raise StoreError(f"column {modality!r}: dim {dim} is not clip_len x crop_size^2 = {geo[0]}x{geo[1]}^2")
    return geo


@dataclass
class WithCrops:
    """A :class:`pipeline.data.TrainSource`: the prepared crops, each split cut to the rows that have a
    clip (a row without a face has nothing to learn from)."""

    prep: PreparedData
    modality: str

    def __getattr__(self, name: str):  # dims, n_classes, sources, ...: those of the prepared data
        return getattr(self.prep, name)

    def split(self, name: str, input_kind: str = "utterance", require_labels: bool = True) -> SplitTensors:
        st = self.prep.split(name, "utterance", require_labels)
        keep = np.flatnonzero(st.batch.present[self.modality].numpy())
        if not len(keep):
            raise SplitError(f"split {name!r} has no labelled rows with face crops")
        return SplitTensors(name, slice_batch(st.batch, keep), st.rows[keep], st.segments)


def train_c3d(cfg: C3DTrainConfig, *, store: str | Path, dataset: str, out_dir: str | Path) -> Path:
    """Train on the train split's labelled rows with the one trainer; the epoch is chosen on valid when
    the corpus has one (else the last epoch). ``out_dir`` is a run directory (:mod:`pipeline.checkpoint`)."""
    meta = read_meta(feature_set_path(store, dataset, cfg.crops_feature_set))
    if cfg.modality not in meta.modalities:
        raise StoreError(f"{dataset}/{cfg.crops_feature_set} has no column {cfg.modality!r}")
    clip_len, crop_size = crop_geometry(meta, cfg.modality)
    model = {**cfg.model, "clip_len": clip_len, "crop_size": crop_size, "augment": cfg.augment, "cosine": cfg.cosine}
    tcfg = TrainConfig(model="c3d", model_cfg=model, epochs=cfg.epochs, patience=cfg.patience,
                       batch_size=cfg.batch_size, seed=cfg.seed, label=cfg.label, standardize="none",
                       modalities=[cfg.modality], device=cfg.device)
    prep = prepare_for(tcfg, store, dataset, {cfg.modality: cfg.crops_feature_set})
    n_train = len(WithCrops(prep, cfg.modality).split("train"))
    if n_train < 2:
        raise StoreError(f"only {n_train} labelled training rows with crops in {dataset}/{cfg.crops_feature_set}")
    return train(tcfg, store=store, dataset=dataset, out_dir=out_dir, prepared=WithCrops(prep, cfg.modality),
                 progress=None, without_valid=True)


def load_c3d(path: str | Path) -> tuple[C3D, RunInfo]:
    """A C3D run directory (or its ``checkpoint.safetensors``) -> (model, run info); refuses anything
    :func:`pipeline.checkpoint.load_run` refuses, and runs of other models."""
    path = Path(path)
    model, info = load_run(path if path.is_dir() else path.parent)
    if not isinstance(model, C3D):
        raise InputError(f"run of model {info.model!r}, not c3d", path=path)
    return model, info


# ---------------------------------------------------------------------------------------- features


def write_c3d_features(
    model_dir: str | Path,
    *,
    store: str | Path,
    dataset: str,
    crops_feature_set: str,
    feature_set: str,
    modality: str = "video",
    out_modality: str = "video",
    batch_size: int = 64,
    device_name: str = "auto",
) -> Path:
    """Penultimate-layer features of every row with crops (missing rows stay missing) as a new set,
    in column ``out_modality`` (``video`` by default: what the context network and fusion models read)."""
    model, info = load_c3d(model_dir)
    src = read_feature_set(store, dataset, crops_feature_set, modalities=[modality])
    if src.meta.modalities[modality].dim != info.dims[model.modality]:
        raise StoreError(f"crops of dim {src.meta.modalities[modality].dim}, the model expects {info.dims[model.modality]}")
    x, missing = src.features[modality], src.missing[modality]
    device = device_of(device_name)
    model.to(device)
    out = np.zeros((len(x), model.cfg.feature_dim), np.float32)
    present = np.flatnonzero(~missing)
    for i in range(0, len(present), batch_size):
        rows = present[i : i + batch_size]
        out[rows] = model.embed_clips(torch.from_numpy(x[rows]).to(device)).cpu().numpy()
    weights_sha = info.checkpoint_sha256[:16]
    meta = make_meta(
        dataset=dataset, feature_set=feature_set,
        modalities={out_modality: ModalitySpec(kind="vector", dim=model.cfg.feature_dim,
                                           description="C3D penultimate layer over face-crop clips")},
        producer=Producer.of("model", "c3d", {"model": info.model_cfg, "train": info.train_config,
                                              "weights_sha": weights_sha}),
        source_hash=src.meta.source_hash,
        label_names=src.meta.label_names,
        lineage=[f"{dataset}/{crops_feature_set}@{src.meta.source_hash}"],
        extra={"run": str(model_dir), "trained_on": f"{info.dataset}/{info.features}@{info.data_hash}"},
    )
    return write_feature_set(store, FeatureSet(meta, src.segments, {out_modality: out}, {out_modality: missing}))


def produce_c3d_features(cfg: C3DTrainConfig, *, store: str | Path, dataset: str, feature_set: str,
                         out_dir: str | Path) -> Path:
    """:func:`train_c3d` then :func:`write_c3d_features`, cross-fitted when ``cfg.cross_fit`` is K >= 2
    (:mod:`pipeline.crossfit`; fold models under ``out_dir/fold-*``)."""
    from pipeline.crossfit import cross_fit_feature_set

    def produce(st: Path, src: str, out: str, run_dir: Path, c: C3DTrainConfig) -> Path:
        run = train_c3d(c.model_copy(update={"crops_feature_set": src}), store=st, dataset=dataset, out_dir=run_dir)
        return write_c3d_features(run, store=st, dataset=dataset, crops_feature_set=src, feature_set=out,
                                  modality=c.modality)

    path = produce(Path(store), cfg.crops_feature_set, feature_set, Path(out_dir), cfg)
    if cfg.cross_fit:
        fold_cfg, n = cfg.model_copy(update={"cross_fit": 0}), iter(range(cfg.cross_fit))
        path = cross_fit_feature_set(
            store, dataset, cfg.crops_feature_set, k=cfg.cross_fit, seed=cfg.seed, full=feature_set,
            modality="video", produce_set=lambda st, src, out: produce(st, src, out, Path(out_dir) / f"fold-{next(n)}", fold_cfg))
    return path
