"""Cross-fitting: no training row is encoded by a model that saw its video; text-CNN and C3D adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_visual_c3d import _mead

from affectflow.cli import main
from pipeline.crossfit import cross_fit, video_folds
from pipeline.engine import extract_corpus
from pipeline.errors import InputError
from pipeline.extract import ExtractConfig, ExtractorSpec
from pipeline.extractors.c3d_crops import FaceCropsConfig
from pipeline.store import read_feature_set
from pipeline.text_cnn import TextCNNConfig, produce_text_cnn
from pipeline.visual_cnn import C3DTrainConfig, build_crop_store, produce_c3d_features


def _segments() -> pd.DataFrame:
    videos = [f"v{i}" for i in range(7)] + ["w0", "w1"]
    rows = [{"video_id": v, "segment_id": f"{v}_{j}", "split": "train" if v[0] == "v" else "valid"}
            for v in videos for j in range(3)]
    return pd.DataFrame(rows)


def test_folds_partition_the_training_videos_deterministically():
    seg = _segments()
    folds = video_folds(seg, 3, seed=1)
    assert sorted(folds) == [f"v{i}" for i in range(7)]  # training videos only
    assert sorted(np.bincount(list(folds.values()))) == [2, 2, 3]
    assert folds == video_folds(seg, 3, seed=1) and folds != video_folds(seg, 3, seed=2)
    with pytest.raises(InputError, match="K = 8"):
        video_folds(seg, 8, seed=0)


@pytest.mark.parametrize("heldout", ["full", "average"])
def test_no_training_row_comes_from_a_model_that_saw_its_video(heldout):
    """The producer memorises its training videos: feature = 1 when it saw the row's video."""
    seg = _segments()
    video = seg["video_id"].to_numpy()
    fitted: list[set[str]] = []

    def fit(videos: list[str]) -> set[str]:
        fitted.append(set(videos))
        return set(videos)

    feats, info = cross_fit(seg, k=3, seed=0, heldout=heldout, fit=fit,
                            produce=lambda seen, rows: np.isin(video[rows], list(seen)).astype(float)[:, None])
    assert feats.shape == (len(seg), 1) and (feats == 0).all()  # nobody saw the row it encoded
    assert len(fitted) == (4 if heldout == "full" else 3) and info["k"] == 3 and info["heldout"] == heldout
    if heldout == "full":
        assert fitted[-1] == {f"v{i}" for i in range(7)}  # valid rows: the all-training-videos model
    for f in fitted[:3]:  # each fold model trained on the other folds' videos only
        assert len(f) in (4, 5) and not f & {"w0", "w1"}


def test_text_cnn_cross_fit_on_mosi(mosi_dir, glove_txt, tmp_path):
    cfg = ExtractConfig(text=[ExtractorSpec(name="glove", config={"vectors": str(glove_txt)}, keep_sequence=True)],
                        audio=[], video=[])
    extract_corpus(mosi_dir / "segments.csv", store=tmp_path, dataset="mosi", cfg=cfg)
    for name, k in (("in", 0), ("cf", 3)):
        res = produce_text_cnn(TextCNNConfig(epochs=2, lr=3e-3, cross_fit=k), store=tmp_path, dataset="mosi",
                               words_feature_set="extracted.seq", out_feature_set=name)
        assert res["cross_fit"] == k
    a, b = read_feature_set(tmp_path, "mosi", "in"), read_feature_set(tmp_path, "mosi", "cf")
    train = (a.segments["split"] == "train").to_numpy()
    assert not np.allclose(a.features["text"][train], b.features["text"][train])
    assert not np.allclose(a.features["text"][~train], b.features["text"][~train])  # valid: the fold average
    assert b.meta.extra["cross_fit"]["k"] == 3 and b.meta.extra["cross_fit"]["heldout"] == "average"
    assert "cross_fit" not in a.meta.extra
    assert b.meta.producer.config["cross_fit"] == 3


def test_c3d_cross_fit_on_mead(clips_dir, tmp_path):
    items, segs = _mead(clips_dir, {"M030": "train", "W009": "valid"}, ["happy", "sad", "angry", "neutral"])
    build_crop_store(items, segs, store=tmp_path, dataset="mead", feature_set="crops", cfg=FaceCropsConfig(clip_len=8))
    cfg = C3DTrainConfig(crops_feature_set="crops", epochs=1, batch_size=4, cross_fit=2)
    produce_c3d_features(cfg, store=tmp_path, dataset="mead", feature_set="c3d-cf", out_dir=tmp_path / "c3d")
    fs = read_feature_set(tmp_path, "mead", "c3d-cf")
    assert fs.meta.extra["cross_fit"]["k"] == 2 and fs.features["video"].shape == (16, 100)
    assert sorted(p.name for p in (tmp_path / "c3d").glob("fold-*")) == ["fold-0", "fold-1"]
    assert np.isfinite(fs.features["video"]).all() and fs.features["video"][:8].std() > 0


def test_cli_refuses_one_fold(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--cross-fit", "1", "--out", str(tmp_path / "runs")]) == 2
    assert main(["train", "ucln", "--store", str(tmp_path), "--dataset", "x", "--out", str(tmp_path / "u"),
                 "--cross-fit", "-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("cross_fit must be 0 (in-sample) or a number of folds >= 2" in e for e in err)
    assert not list(tmp_path.iterdir())  # nothing was started or written
