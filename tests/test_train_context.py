"""UCLN through the one trainer, video-level batches, and context features written back to the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _train_data import build_raw_store

from pipeline.checkpoint import load_run
from pipeline.context import train_ucln_per_modality, write_context_features
from pipeline.data import prepare, prepare_from_run
from pipeline.errors import InputError
from pipeline.evaluate import evaluate_run
from pipeline.store import read_feature_set
from pipeline.train import TrainConfig, train


@pytest.fixture(scope="module")
def store(tmp_path_factory, mosi_dir):
    root = tmp_path_factory.mktemp("store")
    drop = np.zeros(1687, bool)
    drop[[3, 500, 1500]] = True  # three utterances without video
    build_raw_store(root, mosi_dir, drop={"video": drop})
    return root


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    cfg = TrainConfig(model="ucln", epochs=8, patience=4, batch_size=10, seed=0)
    out = tmp_path_factory.mktemp("ucln")
    return train_ucln_per_modality(cfg, store=store, dataset="mosi", features="bclstm-raw", out_dir=out,
                                   write_context="ucln-context", progress=None)


def test_video_level_batches_follow_segment_order(store):
    prep = prepare(store, "mosi", "bclstm-raw", modalities=["text"])
    st = prep.split("valid", "video")
    assert st.batch.x["text"].shape == (10, int(st.batch.mask.sum(1).max()), 100)
    assert int(st.batch.mask.sum()) == 240
    seg = prep.joined.segments
    for v in range(st.batch.size):
        rows = st.rows[v][st.rows[v] >= 0]
        assert seg["video_id"].iloc[rows].nunique() == 1
        assert seg["segment_index"].iloc[rows].is_monotonic_increasing
    # Masks are prefixes (real utterances first): what packed LSTMs need.
    lengths = st.batch.mask.sum(1)
    assert torch.equal(st.batch.mask, torch.arange(st.batch.mask.shape[1])[None] < lengths[:, None])


def test_text_ucln_learns_and_context_set_is_written(runs, store):
    assert set(runs) == {"text", "audio", "video"}
    text = evaluate_run(runs["text"], "valid")
    assert text["n"] == 240 and text["accuracy"] > text["majority_accuracy"] + 0.08
    fs = read_feature_set(store, "mosi", "ucln-context")
    assert {m: s.dim for m, s in fs.meta.modalities.items()} == {"text": 50, "audio": 50, "video": 50}
    assert len(fs) == 1687 and fs.meta.producer.kind == "model" and fs.meta.producer.name == "ucln"
    src = read_feature_set(store, "mosi", "bclstm-raw")
    assert fs.meta.lineage == [f"mosi/bclstm-raw@{src.meta.source_hash}"]
    for m, run in runs.items():
        assert fs.meta.producer.config[m]["checkpoint_sha256"] == load_run(run)[1].checkpoint_sha256
    # tanh outputs, and the input's missing rows stay missing.
    assert np.abs(fs.features["text"]).max() <= 1.0
    assert fs.missing["video"].sum() == 3 and not fs.missing["text"].any()


def test_context_equals_the_models_output(runs, store):
    model, info = load_run(runs["audio"])
    st = prepare_from_run(info).split("valid", "video")
    ctx = model.predict(st.batch)["context"][st.batch.mask].numpy()
    fs = read_feature_set(store, "mosi", "ucln-context", modalities=["audio"])
    np.testing.assert_allclose(fs.features["audio"][st.flat_rows()], ctx, atol=1e-6)


def test_fusion_model_trains_on_context_features(runs, store, tmp_path):
    run = train(TrainConfig(model="mlp", epochs=6, patience=3), store=store, dataset="mosi",
                features="ucln-context", out_dir=tmp_path / "mlp", progress=None)
    info = load_run(run)[1]
    # context features lie in [-1, 1]: 'auto' leaves them on their tanh scale
    assert {s["mode"] for s in info.standardization.values()} == {"none"}
    assert evaluate_run(run, "valid")["accuracy"] > 0.7


def test_utterance_level_run_is_not_a_context_model(store, tmp_path):
    run = train(TrainConfig(model="mlp", epochs=1), store=store, dataset="mosi", features="bclstm-raw",
                out_dir=tmp_path / "mlp", progress=None)
    with pytest.raises(InputError, match="utterance-level"):
        write_context_features(run, store=store, dataset="mosi", feature_set="nope")


def test_video_level_runs_are_deterministic(store, tmp_path):
    cfg = TrainConfig(model="ucln", model_cfg={"modality": "audio"}, modalities=["audio"], epochs=2, batch_size=10)
    a = train(cfg, store=store, dataset="mosi", features="bclstm-raw", out_dir=tmp_path / "a", progress=None)
    b = train(cfg, store=store, dataset="mosi", features="bclstm-raw", out_dir=tmp_path / "b", progress=None)
    assert load_run(a)[1].checkpoint_sha256 == load_run(b)[1].checkpoint_sha256


def test_class_names_travel_through_the_context_features(store, tmp_path):
    """A class-labelled set (MOSI scores in three bins): the context set keeps the class names, so the
    fusion models trained on it report "negative"/"neutral"/"positive", not "0"/"1"/"2"."""
    from pipeline.store import FeatureSet, make_meta, read_meta, write_feature_set

    src = read_feature_set(store, "mosi", "bclstm-raw", modalities=["text"])
    names = ["negative", "neutral", "positive"]
    seg = src.segments.copy()
    seg["label_class"] = np.digitize(seg["score"].to_numpy(), [-0.5, 0.5]).astype(np.int8)
    meta = make_meta(dataset="mosi3", feature_set="raw", modalities={"text": src.meta.modalities["text"]},
                     producer=src.meta.producer, source_hash=src.meta.source_hash, label_names=names)
    write_feature_set(tmp_path, FeatureSet(meta, seg, src.features, src.missing))
    cfg = TrainConfig(model="ucln", epochs=2, patience=2, batch_size=10, seed=0, label="class")
    train_ucln_per_modality(cfg, store=tmp_path, dataset="mosi3", features="raw", out_dir=tmp_path / "ucln",
                            write_context="ctx", progress=None)
    assert read_meta(tmp_path / "mosi3" / "ctx.parquet").label_names == names
    run = train(TrainConfig(model="mlp", epochs=2, seed=0, label="class"), store=tmp_path, dataset="mosi3",
                features="ctx", out_dir=tmp_path / "mlp", progress=None)
    assert list(evaluate_run(run, "valid")["per_class_accuracy"]) == names
