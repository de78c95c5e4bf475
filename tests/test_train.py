"""The one training loop and its run directories, on the real MOSI features (honest-mosi split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_data import build_raw_store

from pipeline.checkpoint import CHECKPOINT, HISTORY, RUN_JSON, CheckpointError, load_run, read_history
from pipeline.data import load_joined, prepare
from pipeline.errors import SplitError
from pipeline.evaluate import evaluate_run, predict_run
from pipeline.train import TrainConfig, train

CFG = TrainConfig(model="mlp", epochs=12, patience=4, seed=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory, mosi_dir) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_raw_store(root, mosi_dir)
    return root


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory) -> Path:
    return train(CFG, store=store, dataset="mosi", out_dir=tmp_path_factory.mktemp("runs") / "mlp", progress=None)


def test_short_real_run_learns_well_above_majority(run_dir):
    res = evaluate_run(run_dir, "valid")
    assert res["n"] == 240 and res["class_counts"] == {"negative": 91, "positive": 149}
    assert res["majority_accuracy"] == pytest.approx(149 / 240)
    # Majority is 62.1%; a learning model on these features reaches the high 70s.
    assert res["accuracy"] > res["majority_accuracy"] + 0.10
    assert 0 < res["f1_weighted"] <= 1 and len(res["confusion_matrix"]) == 2
    assert res["mae"] is None and "classes only" in res["score_metrics"]


def test_run_directory_records_what_made_it(run_dir, store):
    info = json.loads((run_dir / RUN_JSON).read_text())
    assert info["class_path"] == "models.mlp.EarlyFusionMLP"
    assert info["dims"] == {"text": 100, "audio": 73, "video": 100} and info["n_classes"] == 2
    assert info["features"] == {m: "bclstm-raw" for m in ("text", "audio", "video")}
    assert info["data_hash"] and info["sources"]["audio"]["source_hash"]
    assert {"torch", "numpy", "python"} <= set(info["versions"])
    # Train-only standardisation: openSMILE audio is unscaled, so it is z-scored with train stats.
    joined = load_joined(store, "mosi", "bclstm-raw")
    train_audio = joined.x["audio"][(joined.segments["split"] == "train").to_numpy()]
    assert info["standardization"]["audio"]["mode"] == "zscore"
    np.testing.assert_allclose(info["standardization"]["audio"]["mean"], train_audio.mean(0), rtol=1e-4, atol=1e-5)
    hist = read_history(run_dir)
    assert len(hist) == info["epochs_run"] and 1 <= info["best_epoch"] <= len(hist)
    best_row = hist[info["best_epoch"] - 1]
    assert best_row["best"] is True and best_row["valid_accuracy"] == pytest.approx(info["best_valid"]["accuracy"])
    # The epoch was chosen on valid: the saved weights reproduce the best epoch's valid accuracy.
    assert evaluate_run(run_dir, "valid")["accuracy"] == pytest.approx(info["best_valid"]["accuracy"])


def test_identical_seeds_give_identical_metrics(run_dir, store, tmp_path):
    again = train(CFG, store=store, dataset="mosi", out_dir=tmp_path / "again", progress=None)
    def drop_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert drop_time(read_history(again)) == drop_time(read_history(run_dir))
    a, b = json.loads((run_dir / RUN_JSON).read_text()), json.loads((again / RUN_JSON).read_text())
    assert a["checkpoint_sha256"] == b["checkpoint_sha256"]
    other = train(CFG.model_copy(update={"seed": 1}), store=store, dataset="mosi", out_dir=tmp_path / "s1", progress=None)
    assert json.loads((other / RUN_JSON).read_text())["checkpoint_sha256"] != a["checkpoint_sha256"]


def test_absent_split_is_a_clear_error(run_dir):
    with pytest.raises(SplitError, match="'test' is absent"):
        evaluate_run(run_dir, "test")


def test_predict_run_returns_per_utterance_arrays(run_dir):
    out = predict_run(run_dir, "valid")
    assert out["logits"].shape == (240, 2) and out["embedding"].shape[0] == 240
    assert len(out["segment_id"]) == 240 and set(out["labels"]) == {0, 1}
    np.testing.assert_allclose(out["probs"].sum(1), 1, rtol=1e-5)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def _edit_json(run: Path, **changes) -> None:
    info = json.loads((run / RUN_JSON).read_text())
    info.update(changes)
    (run / RUN_JSON).write_text(json.dumps(info))


def test_corrupt_checkpoint_is_refused(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    data = bytearray((run / CHECKPOINT).read_bytes())
    data[-5] ^= 0xFF
    (run / CHECKPOINT).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_run(run)
    # Without a recorded hash, a truncated file is still refused by the safetensors reader.
    _edit_json(run, checkpoint_sha256="")
    (run / CHECKPOINT).write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_run(run)


def test_missing_or_edited_run_json_is_refused(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    info = json.loads((run / RUN_JSON).read_text())
    _edit_json(run, train_config={**info["train_config"], "epochs": 999})
    with pytest.raises(CheckpointError, match="config hash"):
        load_run(run)
    (run / RUN_JSON).write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid"):
        load_run(run)
    (run / RUN_JSON).unlink()
    with pytest.raises(CheckpointError, match="run.json is missing"):
        load_run(run)
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path / "nowhere")


def test_mismatched_checkpoint_is_refused(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    _edit_json(run, class_path="models.argf.ARGF")
    with pytest.raises(CheckpointError, match="now models.mlp.EarlyFusionMLP"):
        load_run(run)
    run2 = tmp_path / "dims"
    shutil.copytree(run_dir, run2)
    info = json.loads((run2 / RUN_JSON).read_text())
    _edit_json(run2, dims={**info["dims"], "audio": 74})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_run(run2)
    run3 = tmp_path / "hidden"
    shutil.copytree(run_dir, run3)
    _edit_json(run3, model_cfg={**info["model_cfg"], "layers": 2})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run(run3)


def test_missing_modality_rows_and_combined_feature_sets(mosi_dir, tmp_path):
    """Text from one feature set, audio+video from another that lacks some segments (extracted-style)."""
    store = tmp_path / "store"
    build_raw_store(store, mosi_dir, feature_set="text-only", modalities=("text",))
    rng = np.random.default_rng(0)
    drop = rng.random(1687) < 0.2
    build_raw_store(store, mosi_dir, feature_set="av", modalities=("audio", "video"), drop={"audio": drop})
    prep = prepare(store, "mosi", {"text": "text-only", "audio": "av", "video": "av"})
    assert prep.joined.missing["audio"].sum() == drop.sum() and not prep.joined.missing["video"].any()
    st = prep.split("train", "utterance")
    assert (~st.batch.present["audio"]).sum() == drop[:1447].sum()
    assert torch.all(st.batch.x["audio"][~st.batch.present["audio"]] == 0)
    cfg = CFG.model_copy(update={"model_cfg": {"presence_flags": True}, "epochs": 4})
    run = train(cfg, store=store, dataset="mosi", features={"text": "text-only", "audio": "av", "video": "av"},
                out_dir=tmp_path / "run", progress=None)
    info = json.loads((run / RUN_JSON).read_text())
    assert info["features"] == {"text": "text-only", "audio": "av", "video": "av"}
    assert evaluate_run(run, "valid")["accuracy"] > 0.65
    (run / HISTORY).unlink()  # the history is a record, not needed to load the model
    load_run(run)


def test_a_set_lacking_segments_marks_them_missing(mosi_dir, tmp_path):
    """The smaller set (text, 10% of segments absent) does not drop rows from the larger one."""
    store = tmp_path / "store"
    keep = np.random.default_rng(1).random(1687) > 0.1
    build_raw_store(store, mosi_dir, feature_set="text-part", modalities=("text",), keep=keep)
    build_raw_store(store, mosi_dir, feature_set="av", modalities=("audio", "video"))
    prep = prepare(store, "mosi", {"text": "text-part", "audio": "av", "video": "av"})
    assert len(prep.joined.segments) == 1687
    assert (prep.joined.missing["text"] == ~keep).all() and not prep.joined.missing["audio"].any()
    assert prep.joined.sources["text"].n_rows == keep.sum()
