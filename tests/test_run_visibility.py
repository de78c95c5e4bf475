"""What the Prefect server shows of the shared quick rebuild (tests/prefect_server.py), read through its
API: runs named from their parameters and tagged, task runs named after what they do, and the
pipeline's own log lines (stages with cache keys, one line per epoch, final metrics) in the run's logs."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from prefect_server import Rebuilt, describe, shared_rebuild

pytestmark = pytest.mark.slow
STAGES = ("ingest", "train-ucln-text", "train-ucln-audio", "train-ucln-video", "context-features", "train-argf")


@pytest.fixture(scope="module")
def rebuilt(request: pytest.FixtureRequest) -> Rebuilt:
    return shared_rebuild(request.config)


@pytest.fixture(scope="module")
def runs(rebuilt: Rebuilt, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    first, second = describe(request, rebuilt.first["flow_run"]["id"], rebuilt.second["flow_run"]["id"])
    return first, second


def messages(run_: dict, logger: str) -> list[str]:
    return [g["message"] for g in run_["logs"] if g["logger"] == logger]


def test_runs_are_named_from_parameters_and_tagged(rebuilt: Rebuilt, runs: tuple[dict, dict]) -> None:
    for summary, r in zip((rebuilt.first, rebuilt.second), runs, strict=True):
        assert re.fullmatch(r"rebuild-mosi-\d{8}-\d{6}", r["name"]), r["name"]
        assert r["name"] == summary["flow_run"]["name"]
        assert {"dataset:mosi", "corpus:embedded-mosi"} <= set(r["tags"]), r["tags"]
    assert runs[0]["task_runs"] == sorted(["ingest-embedded", "train-ucln-text", "train-ucln-audio",
                                           "train-ucln-video", "context-features-ucln-context", "train-argf",
                                           "evaluate-argf-valid", "report-mosi"])


def test_stage_epoch_and_metric_lines_reach_the_run(rebuilt: Rebuilt, runs: tuple[dict, dict]) -> None:
    first = runs[0]
    stage_lines = messages(first, "affectflow.rebuild")
    for st in STAGES:
        assert any(re.fullmatch(rf"stage {st}: start \(cache key [0-9a-f]{{16}}\)", m) for m in stage_lines), st
        assert any(re.fullmatch(rf"stage {st}: end in [\d.]+ s, recomputed \(cache key [0-9a-f]{{16}}\)", m)
                   for m in stage_lines), st
    # One line per trained epoch, attached to the training task's run, with its losses and valid metrics.
    history = pd.read_csv(Path(rebuilt.first["runs"]["argf"]) / "history.csv")
    epochs = [g for g in first["logs"] if g["logger"] == "affectflow.train"
              and re.match(r"argf epoch +\d+/3 ", g["message"])]
    assert len(epochs) == len(history) == 3
    for g, (_, row) in zip(epochs, history.iterrows(), strict=True):
        assert g["task_run"] == "train-argf"
        assert f"train_loss {row['train_loss']:.4f}" in g["message"]
        assert f"acc {row['valid_accuracy']:.4f}" in g["message"] and "valid_loss" in g["message"]
    m = rebuilt.first["metrics"]["argf"]
    assert any(f"accuracy {100 * m['accuracy']:.2f}%" in line for line in stage_lines), stage_lines[-3:]


def test_cached_rerun_says_every_stage_came_from_cache(runs: tuple[dict, dict]) -> None:
    lines = messages(runs[1], "affectflow.rebuild")
    for st in STAGES:
        assert any(re.match(rf"stage {st}: end in [\d.]+ s, served from cache \(cache key", m) for m in lines), st
    assert not messages(runs[1], "affectflow.train")  # nothing trained
