"""The training flow on a zoo model, then the robustness Prefect flow under Prefect's test harness: files written, artifacts published."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_flow_writes_tables_and_artifacts(prefect_harness, mosi_dir: Path, tmp_path: Path) -> None:
    from _train_data import MARGIN_OVER_MAJORITY, build_raw_store, majority_rate
    from prefect.client.orchestration import get_client

    from flows.robustness import robustness
    from flows.train import train_model

    build_raw_store(tmp_path / "store", mosi_dir)
    # A zoo model trained by the training flow, then scored by the robustness flow.
    trained = train_model({"model": "cyin", "epochs": 2, "patience": 2, "model_cfg": {"stage1_epochs": 1}},
                          str(tmp_path / "store"), "mosi", str(tmp_path / "run"), features="bclstm-raw")
    run = Path(trained["run"]["run_dir"])
    assert trained["run"]["accuracy"] >= majority_rate(tmp_path / "store") + MARGIN_OVER_MAJORITY  # majority 0.6208
    results = robustness([str(run)], {"rates": [0.3, 0.6], "seeds": [0, 1]})
    assert len(results) == 1 and results[0]["curve"]["rate"] == [0.0, 0.3, 0.6]
    assert Path(results[0]["files"]["png"]).is_file()
    assert (run / "robustness" / "valid" / "robustness.md").is_file()

    import asyncio

    async def keys() -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    got = asyncio.run(keys())
    assert "robustness-summary" in got and "robustness-run" in got
