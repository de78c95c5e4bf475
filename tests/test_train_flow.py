"""train_model and evaluate_model Prefect flows (temporary Prefect database, ephemeral server)."""

from __future__ import annotations

import pytest
from _train_data import build_raw_store


@pytest.mark.slow
def test_train_then_evaluate_flows(prefect_harness, tmp_path, mosi_dir):
    from flows.evaluate import evaluate_model
    from flows.train import train_model
    from pipeline.errors import SplitError

    store = tmp_path / "store"
    build_raw_store(store, mosi_dir)
    cfg = {"model": "mlp", "epochs": 4, "patience": 2, "seed": 0}
    res = train_model(cfg, str(store), "mosi", str(tmp_path / "run"), features="bclstm-raw")
    assert res["run"]["run_dir"] == str(tmp_path / "run") and res["run"]["accuracy"] > 0.7
    (ev,) = evaluate_model(str(tmp_path / "run"), "valid")
    assert ev["accuracy"] == pytest.approx(res["run"]["accuracy"]) and ev["n"] == 240
    with pytest.raises(SplitError):
        evaluate_model(str(tmp_path / "run"), "test")
    ucln = train_model({"model": "ucln", "epochs": 2, "batch_size": 10}, str(store), "mosi", str(tmp_path / "u"),
                       features="bclstm-raw", write_context="ctx")
    assert set(ucln) == {"text", "audio", "video"} and (store / "mosi" / "ctx.parquet").is_file()
