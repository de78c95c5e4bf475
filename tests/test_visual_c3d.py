"""Face-crop clips, the hand-written C3D and its train -> features path, on real MEAD clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.base import Batch
from models.c3d import C3D, C3DConfig
from models.registry import get_model
from pipeline.checkpoint import read_history, read_run_info
from pipeline.data import prepare_for
from pipeline.extractors.base import MediaItem
from pipeline.extractors.c3d_crops import FaceCropsConfig
from pipeline.extractors.registry import get_extractor
from pipeline.store import read_feature_set, read_meta
from pipeline.train_config import TrainConfig
from pipeline.visual_cnn import (
    C3DTrainConfig,
    WithCrops,
    build_crop_store,
    load_c3d,
    train_c3d,
    write_c3d_features,
)


def test_c3d_shapes_and_registry() -> None:
    model = get_model("c3d", dims={"video": 16 * 32 * 32}, n_classes=8)
    assert isinstance(model, C3D)
    x = torch.rand(3, 16 * 32 * 32)
    out = model(Batch({"video": x}, torch.zeros(3, dtype=torch.long)))
    assert out["logits"].shape == (3, 8) and out["embedding"].shape == (3, 100)
    assert model.embed_clips(x.view(3, 16, 32, 32)).shape == (3, 100)
    assert 100_000 < model.n_parameters() < 1_000_000  # "small": cheap on 2 CPU cores
    with pytest.raises(ValueError, match="expects video dim"):
        C3D(C3DConfig(), dims={"video": 100}, n_classes=2)


def test_c3d_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = C3D(C3DConfig(clip_len=8, crop_size=16, dropout=0.0, lr=3e-3, augment=False), dims={"video": 8 * 16 * 16}, n_classes=2)
    # two classes that differ only in motion direction: a bar moving right vs left (no flip augmentation:
    # a mirrored clip of one class is a clip of the other)
    x = torch.zeros(8, 8, 16, 16)
    for i in range(8):
        for t in range(8):
            col = 4 + t if i % 2 == 0 else 11 - t
            x[i, t, :, col] = 1.0
    y = torch.tensor([0, 1] * 4)
    opts = model.make_optimizers()
    losses = [model.training_step(Batch({"video": x.view(8, -1)}, y), opts)["loss"] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def _mead(clips_dir: Path, actors: dict[str, str], emotions: list[str]) -> tuple[list[MediaItem], pd.DataFrame]:
    items, rows = [], []
    for actor, split in actors.items():
        for e, emo in enumerate(emotions):
            path = next((clips_dir / "mead_dreamtalk").glob(f"{actor}_front_{emo}_level*_001.mp4"))
            segs = pd.DataFrame({"segment_id": [f"{path.stem}_{k}" for k in range(2)], "segment_index": [0, 1],
                                 "start": [0.0, 1.5], "end": [1.5, 3.0]})
            items.append(MediaItem(path.stem, path, segs))
            rows += [{**s, "video_id": path.stem, "split": split, "label_class": e} for s in segs.to_dict("records")]
    return items, pd.DataFrame(rows)


def test_crops_extractor_per_segment_and_missing_segments(clips_dir: Path) -> None:
    ex = get_extractor("face_crops", clip_len=8)
    path = clips_dir / "pyfeat" / "noface_face.mov"  # the face appears after ~4 s
    segs = pd.DataFrame({"segment_id": ["a", "b"], "segment_index": [0, 1], "start": [0.0, 4.5], "end": [3.0, 6.3]})
    tf = ex.extract(MediaItem("noface_face", path, segs), None).features
    assert tf.intervals.tolist() == [[4.5, 6.3]]  # segment a has no face: absent, not a clip of zeros
    assert tf.values.shape == (1, 8 * 32 * 32)
    clip = tf.values[0].reshape(8, 32, 32)
    assert clip.min() >= 0.0 and clip.max() <= 1.0 and clip.std() > 0.05
    assert np.abs(np.diff(clip, axis=0)).mean() > 0  # real frames over time, not one repeated frame


def test_crop_store_train_features_roundtrip(clips_dir: Path, tmp_path: Path) -> None:
    emotions = ["happy", "sad"]
    items, segs = _mead(clips_dir, {"M030": "train", "W009": "valid"}, emotions)
    no_face = clips_dir / "pyfeat" / "no_face.mp4"
    items.append(MediaItem("no_face", no_face, pd.DataFrame({"segment_id": ["nf"], "start": [0.0], "end": [3.0]})))
    segs = pd.concat([segs, pd.DataFrame([{"segment_id": "nf", "video_id": "no_face", "split": "train",
                                           "label_class": 0, "start": 0.0, "end": 3.0}])], ignore_index=True)
    cfg = FaceCropsConfig(clip_len=8)
    path, quarantine = build_crop_store(items, segs, store=tmp_path, dataset="mead", feature_set="crops",
                                        cfg=cfg, label_names=emotions)
    assert [q["item_id"] for q in quarantine] == ["no_face"] and "no face in" in quarantine[0]["reason"]
    crops = read_feature_set(tmp_path, "mead", "crops")
    assert crops.missing["video"].tolist() == [False] * 8 + [True]
    assert read_meta(path).producer.config["clip_len"] == 8

    run = train_c3d(C3DTrainConfig(crops_feature_set="crops", epochs=2, batch_size=4), store=tmp_path,
                    dataset="mead", out_dir=tmp_path / "c3d")
    # One trainer, one run format: best epoch on valid, safetensors + run.json + history.csv.
    info, hist = read_run_info(run), read_history(run)
    assert info.model == "c3d" and info.best_valid["n"] == 4 and len(hist) == 2 and 1 <= info.best_epoch <= 2
    assert sum(h["best"] for h in hist) >= 1 and np.isfinite([h["train_loss"] for h in hist]).all()
    source = WithCrops(prepare_for(TrainConfig(**info.train_config), tmp_path, "mead", info.features), "video")
    assert len(source.split("train")) == 4  # the no-face train row is not fed

    out = write_c3d_features(run, store=tmp_path, dataset="mead", crops_feature_set="crops", feature_set="c3d")
    feats = read_feature_set(tmp_path, "mead", "c3d")
    assert feats.features["video"].shape == (9, 100)
    assert feats.missing["video"].tolist() == [False] * 8 + [True]
    meta = read_meta(out)
    assert meta.producer.kind == "model" and meta.lineage[0].startswith("mead/crops@")
    # loading the safetensors file alone gives the same features
    model, _ = load_c3d(run / "checkpoint.safetensors")
    x = torch.from_numpy(crops.features["video"][:8])
    assert np.allclose(model.embed_clips(x).numpy(), feats.features["video"][:8], atol=1e-5)
