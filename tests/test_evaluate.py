"""Evaluator metrics: hand-checked values, score metrics only for score-predicting models, a real
multi-class run (MOSI's 7 sentiment classes) reported per class as the paper's Tables 2-3 do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import NO_SCORE, classification_metrics, evaluate_run, metrics_from_outputs
from pipeline.provenance import hash_file
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set
from pipeline.train import TrainConfig, train


def test_classification_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, pred, 3, ["neg", "neu", "pos"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_accuracy"] == {"neg": 0.5, "neu": 1.0, "pos": 0.5}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # per-class F1: 0.5, 0.8, 2/3; equal supports -> weighted = plain mean
    assert m["f1_weighted"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class absent from the split has no accuracy (None), not 0
    assert classification_metrics(np.array([0, 0]), np.array([0, 1]), 3)["per_class_accuracy"]["2"] is None


def test_score_metrics_only_when_the_model_predicts_a_score():
    flat = {"labels": np.array([0, 1, 1]), "logits": np.array([[1.0, 0], [0, 1], [1, 0]]),
            "true_score": np.array([-2.0, 1.2, 0.4], np.float32)}
    m = metrics_from_outputs(flat, 2)
    assert m["mae"] is None and m["score_metrics"] == NO_SCORE
    m = metrics_from_outputs({**flat, "score": np.array([-1.6, 1.0, 0.9], np.float32)}, 2)
    assert m["mae"] == pytest.approx((0.4 + 0.2 + 0.5) / 3, abs=1e-6)
    assert m["acc7"] == pytest.approx(2 / 3)  # rounded: -2/-2, 1/1, 0/1
    assert m["pearson_r"] == pytest.approx(np.corrcoef([-2, 1.2, 0.4], [-1.6, 1.0, 0.9])[0, 1], abs=1e-6)


def test_real_multiclass_run_reports_per_class(tmp_path, mosi_dir):
    """MOSI's 7 sentiment classes (rounded score) from the raw bc-LSTM features."""
    npz = mosi_dir / "bclstm_raw_features.dev.npz"
    z = np.load(npz, allow_pickle=False)
    seg = pd.read_csv(mosi_dir / "segments.csv").set_index("segment_id").loc[z["segment_id"].astype(str)]
    names = ["-3", "-2", "-1", "0", "1", "2", "3"]
    segments = pd.DataFrame({
        "video_id": seg["video_id"].to_numpy(), "segment_id": z["segment_id"].astype(str),
        "segment_index": seg["segment_index"].to_numpy(), "split": z["split"].astype(str),
        "label_class": (np.clip(np.round(z["sentiment_score"]), -3, 3) + 3).astype(np.int16),
        "score": z["sentiment_score"].astype(np.float32),
    })
    meta = make_meta(dataset="mosi7", feature_set="raw", modalities={"text": ModalitySpec(kind="vector", dim=100)},
                     producer=Producer.of("importer", "test", {}), source_hash=hash_file(npz)[:16], label_names=names)
    write_feature_set(tmp_path, FeatureSet(meta, segments, {"text": z["text"]}))
    run = train(TrainConfig(model="mlp", epochs=8, patience=3, select_metric="f1_weighted"), store=tmp_path,
                dataset="mosi7", features="raw", out_dir=tmp_path / "run", progress=None)
    res = evaluate_run(run, "valid")
    assert list(res["per_class_accuracy"]) == names and len(res["confusion_matrix"]) == 7
    assert sum(res["class_counts"].values()) == 240
    cm = np.array(res["confusion_matrix"])
    assert res["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    # Text carries sentiment: well above the 7-class majority.
    assert res["accuracy"] > res["majority_accuracy"] + 0.05
    assert res["score_metrics"] == NO_SCORE
