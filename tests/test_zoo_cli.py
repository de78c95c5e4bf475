"""Every zoo model trains from the CLI on real MOSI features, the run
directory loads back, and `affectflow robustness` scores it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectflow.cli import main as cli


@pytest.fixture(scope="module")
def store(mosi_dir: Path, tmp_path_factory) -> Path:
    from _train_data import build_raw_store

    root = tmp_path_factory.mktemp("zoo_cli")
    build_raw_store(root, mosi_dir)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [
    ("mfm", ["--set", "lambda_mmd=0.1"]),
    ("autofusion", []),
    ("ganfusion", ["--set", "lambda1=0.1"]),
    ("cyin", ["--set", "stage1_epochs=1"]),
])
def test_train_from_cli_then_robustness(model: str, extra: list[str], store: Path, tmp_path: Path, capsys) -> None:
    from pipeline.checkpoint import load_run

    run = tmp_path / "run"
    args = ["train", model, "--store", str(store), "--dataset", "mosi", "--features", "bclstm-raw",
            "--epochs", "1", "--patience", "1", "--out", str(run), "--quiet", *extra]
    assert cli(args) == 0, capsys.readouterr().err
    capsys.readouterr()  # the training log
    loaded, info = load_run(run)
    assert info.model == model and type(loaded).registry_name == model
    assert cli(["robustness", str(run), "--rates", "0.5", "--seeds", "0", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((run / "robustness" / "valid" / "robustness.json").read_text())
    assert printed["auc"] == pytest.approx(summary["auc"])
    assert summary["model"] == model and summary["missing_policy"] == type(loaded).missing_policy
    from _train_data import MARGIN_OVER_MAJORITY, majority_rate

    assert summary["complete_accuracy"] >= majority_rate(store) + MARGIN_OVER_MAJORITY
    assert len(summary["fixed"]) == 6
