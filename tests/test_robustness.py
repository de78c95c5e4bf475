"""Missing-modality robustness (pipeline/robustness.py, `affectflow robustness`): the masks, the
protocol's conditions, the area under the curve, and a real run directory trained on MOSI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from affectflow.cli import main as cli
from models.base import Batch
from pipeline.robustness import (
    RobustnessConfig,
    area,
    evaluate_robustness,
    fixed_conditions,
    random_keep,
    robustness_run,
)

MODS = ["text", "audio", "video"]


def _full_batch(n: int) -> Batch:
    return Batch({m: torch.ones(n, 2) for m in MODS}, torch.zeros(n, dtype=torch.long))


def test_random_keep_never_drops_everything_and_matches_the_rate() -> None:
    for rate in (0.1, 0.4, 0.7):
        keep = random_keep(_full_batch(5000), MODS, rate, 0)
        assert keep.any(1).all()
        dropped = 1 - keep.float().mean().item()
        # nominal rate, minus the rescued all-missing samples (rate^3 of them get one modality back)
        assert rate - rate**3 / 3 - 0.02 < dropped < rate + 0.02
    a = random_keep(_full_batch(50), MODS, 0.5, 3)
    assert (a == random_keep(_full_batch(50), MODS, 0.5, 3)).all()
    with pytest.raises(Exception, match="missing rate"):
        random_keep(_full_batch(5), MODS, 1.0, 0)


def test_one_protocol_when_the_data_already_has_gaps() -> None:
    """Robustness and training-time dropout draw the same masks for the same generator, and a sample
    keeps one of the modalities it HAD (never a modality missing in the data; none if it had none)."""
    had = torch.tensor([[True, False, False], [False, True, True], [False, False, False]]).repeat(400, 1)
    batch = Batch({m: torch.ones(len(had), 2) for m in MODS}, torch.zeros(len(had), dtype=torch.long),
                  {m: had[:, i] for i, m in enumerate(MODS)})
    keep = random_keep(batch, MODS, 0.7, 5)
    assert not (keep & ~had).any()  # never brings back what the data lacks
    assert keep[had.any(1)].any(1).all() and not keep[~had.any(1)].any()
    assert keep[0::3, 0].all()  # the text-only sample always keeps text
    dropped = batch.drop_modalities(MODS, 0.7, torch.Generator().manual_seed(5))
    assert torch.equal(torch.stack([dropped.present[m] for m in MODS], 1), keep)


def test_fixed_conditions_are_every_one_or_two_removed() -> None:
    conds = fixed_conditions(MODS)
    assert len(conds) == 6 and ("text",) in conds and ("audio", "video") in conds
    assert all(0 < len(c) < 3 for c in conds)


def test_with_kept_zeroes_and_flags_and_keeps_data_missing() -> None:
    x = {m: torch.ones(4, 2) for m in MODS}
    batch = Batch(x, torch.zeros(4, dtype=torch.long), {"audio": torch.tensor([True, False, True, True])})
    keep = torch.tensor([[True, True, True], [True, True, True], [False, True, True], [True, True, False]])
    out = batch.with_kept(MODS, keep)
    assert out.present["text"].tolist() == [True, True, False, True]
    assert out.present["audio"].tolist() == [True, False, True, True]  # missing in the data stays missing
    assert out.x["text"][2].abs().sum() == 0 and out.x["video"][3].abs().sum() == 0
    assert out.x["text"][0].sum() == 2


def test_area_is_the_mean_height_of_the_trapezoid() -> None:
    assert area([0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert area([0.0, 0.1, 0.7], [0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert area([0.0], [0.7]) == pytest.approx(0.7)


@pytest.fixture(scope="module")
def run_dir(mosi_dir: Path, tmp_path_factory) -> Path:
    from _train_data import build_raw_store

    from pipeline.train import TrainConfig, train

    root = tmp_path_factory.mktemp("robust")
    build_raw_store(root / "store", mosi_dir)
    cfg = TrainConfig(model="autofusion", epochs=4, patience=4, seed=0)
    return train(cfg, store=root / "store", dataset="mosi", features="bclstm-raw", out_dir=root / "run", progress=None)


def test_robustness_of_a_real_run(run_dir: Path, tmp_path: Path) -> None:
    from pipeline.evaluate import evaluate_run

    cfg = RobustnessConfig(rates=[0.1, 0.4, 0.7], seeds=[0, 1, 2])
    res, paths = robustness_run(run_dir, cfg, out_dir=tmp_path / "out")
    t = res.table
    assert (t["kind"] == "complete").sum() == 1 and (t["kind"] == "fixed").sum() == 6
    assert (t["kind"] == "random").sum() == 9
    # The complete condition is exactly the plain evaluation of the run.
    assert t.iloc[0]["accuracy"] == pytest.approx(evaluate_run(run_dir, "valid")["accuracy"])
    assert res.curve["rate"].tolist() == [0.0, 0.1, 0.4, 0.7]
    assert res.auc == pytest.approx(area(res.curve["rate"], res.curve["accuracy"]))
    eff = res.curve["effective_rate"].tolist()
    assert eff == sorted(eff) and eff[-1] < 0.7
    assert res.majority == pytest.approx(149 / 240)
    for key in ("csv", "curve_csv", "markdown", "json", "png"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(paths["json"].read_text())
    assert summary["model"] == "autofusion" and summary["missing_policy"] == "zero_code"
    assert summary["auc"] == pytest.approx(res.auc) and len(summary["fixed"]) == 6
    assert pd.read_csv(paths["csv"]).shape[0] == 16
    # Deterministic: the same config gives the same table.
    again, _ = robustness_run(run_dir, cfg, out_dir=tmp_path / "again")
    pd.testing.assert_frame_equal(again.table, res.table)


def test_removing_every_informative_modality_costs_accuracy(run_dir: Path) -> None:
    """Text carries most of MOSI's sentiment; with text alone removed the run must lose accuracy, with
    only audio left (the weakest modality, ~55% alone) it must fall towards the majority class."""
    from pipeline.checkpoint import load_run
    from pipeline.data import load_split

    model, info = load_run(run_dir)
    st = load_split(info, "valid")
    res = evaluate_robustness(model, st, info.n_classes, RobustnessConfig(rates=[0.5], seeds=[0]))
    acc = dict(zip(res.table["condition"], res.table["accuracy"], strict=True))
    only_audio = next(k for k in acc if k.endswith("(only audio)"))
    assert acc["complete"] > acc[only_audio] + 0.05


def test_cli_writes_outputs_and_fails_cleanly(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert cli(["robustness", str(run_dir), "--rates", "0.2,0.6", "--seeds", "0,1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["curve"]["rate"] == [0.0, 0.2, 0.6] and (out / "robustness_curve.png").is_file()
    assert cli(["robustness", str(run_dir), "--rates", "1.5", "--out", str(out)]) == 2
    assert "missing rate" in capsys.readouterr().err
    assert cli(["robustness", str(tmp_path / "nowhere")]) == 2
