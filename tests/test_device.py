"""``--device``: on the CPU the one trainer gives, bit for bit, what it gave before the device option
existed (same seed -> same metrics and the same checkpoint bytes; the values below were recorded with
the trainer as it was before), ``auto`` is the CPU here, and an unavailable CUDA is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _train_data import build_raw_store

from affectflow.cli import main as cli
from pipeline.checkpoint import read_run_info
from pipeline.train import TrainConfig, train

# Recorded before the device option (and the trainer's move to a generic data source) was added.
BEFORE = {
    "mlp": (TrainConfig(model="mlp", epochs=12, patience=4, seed=0), 3, 0.7875, 0.787722856985152,
            "9d030a0f3f5d868d8c5cdbf44baebb60bb2991bf4ebfab6f0e09885020cf69a5"),
    # ARGF with modality dropout: also pins the one missing-modality protocol's random draws
    "argf": (TrainConfig(model="argf", epochs=3, patience=3, seed=1, model_cfg={"modality_dropout": 0.1}), 3,
             0.775, 0.7762787816962984, "6a799ffef331dfd1b9f286d8cb40676b7184069f899a181ada8a775753b577c2"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory, mosi_dir) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_raw_store(root, mosi_dir)
    return root


@pytest.mark.skipif(torch.cuda.is_available(), reason="'auto' means CUDA on this machine")
@pytest.mark.parametrize("name", sorted(BEFORE))
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_results_are_unchanged(store: Path, tmp_path: Path, name: str, device: str) -> None:
    cfg, epoch, acc, f1, sha = BEFORE[name]
    run = train(cfg.model_copy(update={"device": device}), store=store, dataset="mosi", out_dir=tmp_path / name,
                progress=None)
    info = read_run_info(run)
    assert info.device == "cpu" and info.best_epoch == epoch
    assert info.best_valid["accuracy"] == acc and info.best_valid["f1_weighted"] == f1
    assert info.checkpoint_sha256 == sha


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_line(store: Path, tmp_path: Path, capsys) -> None:
    rc = cli(["train", "mlp", "--store", str(store), "--dataset", "mosi", "--device", "cuda", "--epochs", "1",
              "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cuda" in err and "no CUDA device" in err
    assert not (tmp_path / "run").exists()
