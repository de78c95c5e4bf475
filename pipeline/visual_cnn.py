"""Train the 3D-CNN on stored face-crop clips (train split only, as bc-LSTM trained its 3D-CNN) and write
its penultimate-layer activations as a new feature set; or load a local safetensors weights file.

Flow: ``build_crop_store`` (standalone path; the generic extraction driver writes the same column) ->
``train_c3d`` -> ``write_c3d_features``. A model directory holds ``c3d.safetensors`` and ``c3d.json``
(typed config, dims, classes, label names, data hash, versions, per-epoch history). No pickle anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from models.base import Batch
from models.c3d import C3D, C3DConfig
from pipeline.errors import InputError, ItemError, StoreError
from pipeline.extract import quarantine_record
from pipeline.extractors.base import MediaItem
from pipeline.extractors.c3d_crops import FaceCropsConfig, FaceCropsExtractor
from pipeline.provenance import StageConfig, hash_file, hash_json, library_versions
from pipeline.store import (
    FeatureSet,
    ModalitySpec,
    Producer,
    make_meta,
    read_feature_set,
    write_feature_set,
)

WEIGHTS, SIDECAR = "c3d.safetensors", "c3d.json"


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
    label: Literal["label_class", "label_bin"] = "label_class"
    model: dict = Field(default_factory=dict, description="C3DConfig fields (clip_len/crop_size read from the store)")
    epochs: int = Field(60, ge=1)  # MEAD, unseen actor, 8 classes: 30 epochs 35% valid, 60 epochs 58% (3 seeds)
    batch_size: int = Field(16, ge=1)
    augment: bool = True  # random horizontal flip + 2-pixel shift: tiny corpora overfit fast
    # cosine decay to 0 over the epochs: the weights at the fixed last epoch (no selection) are stable
    cosine: bool = True
    seed: int = 0
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


def _labelled(fs: FeatureSet, label: str, modality: str) -> tuple[np.ndarray, np.ndarray]:
    y = fs.segments[label].to_numpy()
    ok = ~fs.missing[modality] & ~pd.isna(y)
    return np.flatnonzero(ok), y


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def _accuracy(model: C3D, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(Batch({"video": x[i : i + 64]}, y[i : i + 64]))["logits"].argmax(1)
                          for i in range(0, len(x), 64)])
    model.train()
    return float((pred == y).float().mean())


def train_c3d(cfg: C3DTrainConfig, *, store: str | Path, dataset: str, out_dir: str | Path) -> Path:
    """Train on the train split's labelled rows; valid accuracy is recorded per epoch (no selection)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    fs = read_feature_set(store, dataset, cfg.crops_feature_set, modalities=[cfg.modality])
    clip_len, crop_size = crop_geometry(fs.meta, cfg.modality)
    mcfg = C3DConfig(**{**cfg.model, "clip_len": clip_len, "crop_size": crop_size})
    train, valid = fs.split("train"), (fs.split("valid") if (fs.segments["split"] == "valid").any() else None)
    idx, y_all = _labelled(train, cfg.label, cfg.modality)
    if len(idx) < 2:
        raise StoreError(f"only {len(idx)} labelled training rows with crops in {dataset}/{cfg.crops_feature_set}")
    classes = np.unique(y_all[idx].astype(np.int64))
    n_classes = int(max(classes.max() + 1, 2))
    dim = mcfg.clip_len * mcfg.crop_size**2
    x = torch.from_numpy(train.features[cfg.modality][idx]).view(-1, mcfg.clip_len, mcfg.crop_size, mcfg.crop_size)
    y = torch.from_numpy(y_all[idx].astype(np.int64))
    xv = yv = None
    if valid is not None:
        vidx, vy = _labelled(valid, cfg.label, cfg.modality)
        if len(vidx):
            xv = torch.from_numpy(valid.features[cfg.modality][vidx]).view(-1, *x.shape[1:])
            yv = torch.from_numpy(vy[vidx].astype(np.int64))
    model = C3D(mcfg, dims={"video": dim}, n_classes=n_classes)
    opts = model.make_optimizers()
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs) for o in opts.values()] if cfg.cosine else []
    history, t0 = [], time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=gen)
        losses = []
        for i in range(0, len(x), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            xb = _augment(x[b], gen) if cfg.augment else x[b]
            losses.append(model.training_step(Batch({"video": xb}, y[b]), opts)["loss"])
        for sch in scheds:
            sch.step()
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "train_acc": _accuracy(model, x, y),
               "valid_acc": _accuracy(model, xv, yv) if xv is not None else None,
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))
    info = {
        "model": "c3d", "config": mcfg.model_dump(mode="json"), "train_config": cfg.model_dump(mode="json"),
        "dims": {"video": dim}, "n_classes": n_classes, "label": cfg.label, "label_names": fs.meta.label_names,
        "data": f"{dataset}/{cfg.crops_feature_set}@{fs.meta.source_hash}", "versions": library_versions(),
        "n_train": len(x), "n_valid": 0 if xv is None else len(xv), "history": history,
    }
    (out / SIDECAR).write_text(json.dumps(info, indent=1))
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    return out


def load_c3d(path: str | Path) -> tuple[C3D, dict]:
    """A model directory (or its ``c3d.safetensors``, with ``c3d.json`` beside it) -> (model, info)."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    sidecar = weights.with_name(SIDECAR)
    if not weights.is_file() or not sidecar.is_file():
        raise InputError(f"C3D weights need {WEIGHTS} and {SIDECAR} side by side", path=path)
    info = json.loads(sidecar.read_text())
    model = C3D(C3DConfig(**info["config"]), dims=info["dims"], n_classes=int(info["n_classes"]))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
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
) -> Path:
    """Penultimate-layer features of every row with crops (missing rows stay missing) as a new set,
    in column ``out_modality`` (``video`` by default: what the context network and fusion models read)."""
    model, info = load_c3d(model_dir)
    src = read_feature_set(store, dataset, crops_feature_set, modalities=[modality])
    if src.meta.modalities[modality].dim != info["dims"]["video"]:
        raise StoreError(f"crops of dim {src.meta.modalities[modality].dim}, the model expects {info['dims']['video']}")
    x, missing = src.features[modality], src.missing[modality]
    out = np.zeros((len(x), model.cfg.feature_dim), np.float32)
    present = np.flatnonzero(~missing)
    for i in range(0, len(present), batch_size):
        rows = present[i : i + batch_size]
        out[rows] = model.embed_clips(torch.from_numpy(x[rows])).numpy()
    weights = Path(model_dir) / WEIGHTS if Path(model_dir).is_dir() else Path(model_dir)
    weights_sha = hash_file(weights)[:16]
    meta = make_meta(
        dataset=dataset, feature_set=feature_set,
        modalities={out_modality: ModalitySpec(kind="vector", dim=model.cfg.feature_dim,
                                           description="C3D penultimate layer over face-crop clips")},
        producer=Producer.of("model", "c3d", {"model": info["config"], "train": info.get("train_config"),
                                              "weights_sha": weights_sha}),
        source_hash=src.meta.source_hash,
        label_names=src.meta.label_names,
        lineage=[f"{dataset}/{crops_feature_set}@{src.meta.source_hash}"],
        extra={"weights": weights.name, "trained_on": info.get("data")},
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
