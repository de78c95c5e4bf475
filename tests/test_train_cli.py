"""CLI (train / evaluate / tune), tuning on valid, and the baselines, on the real MOSI context features
imported with the legacy-pickle importer (honest-mosi split)."""

from __future__ import annotations

import json

import pytest
import yaml

from affectflow.cli import main
from pipeline.baselines import run_baseline
from pipeline.checkpoint import read_run_info
from pipeline.importers.legacy_pickle import import_legacy_pickle
from pipeline.train import TrainConfig
from pipeline.tune import TuneConfig, apply_params, tune


@pytest.fixture(scope="module")
def store(tmp_path_factory, mosi_pickle, mosi_dir):
    root = tmp_path_factory.mktemp("store")
    import_legacy_pickle(mosi_pickle, store=root, dataset="mosi", segments=mosi_dir / "segments.csv")
    return root


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_tune_writes_a_config_that_train_accepts(store, tmp_path, capsys):
    cfg_file = tmp_path / "mlp.yaml"
    rc, out, err = _cli(capsys, "tune", "mlp", "--store", store, "--dataset", "mosi", "--trials", "3",
                        "--epochs", "4", "--patience", "2", "--out", cfg_file)
    assert rc == 0 and "best valid accuracy" in out and err.count("trial ") == 3
    chosen = yaml.safe_load(cfg_file.read_text())
    trials = json.loads(cfg_file.with_suffix(".trials.json").read_text())
    best = max(trials["trials"], key=lambda t: t["valid"])
    assert trials["best_value"] == best["valid"]
    # Sampled trainer keys go to the trainer, the rest to the model config.
    assert chosen["batch_size"] == best["params"]["batch_size"]
    assert chosen["model_cfg"]["hidden"] == best["params"]["hidden"] and "batch_size" not in chosen["model_cfg"]
    rc, out, _ = _cli(capsys, "train", "mlp", "--store", store, "--dataset", "mosi", "--config", cfg_file,
                      "--out", tmp_path / "run", "--quiet")
    assert rc == 0
    info = read_run_info(tmp_path / "run")
    assert info.train_config == TrainConfig(**chosen).model_dump(mode="json")
    # Same config, same seed, same data: the tuned trial's valid accuracy is reproduced exactly.
    assert info.best_valid["accuracy"] == pytest.approx(trials["best_value"])
    rc, out, _ = _cli(capsys, "evaluate", tmp_path / "run", "--split", "valid", "--json")
    res = json.loads(out)
    assert rc == 0 and res["accuracy"] == pytest.approx(trials["best_value"]) and res["n"] == 240


def test_tuning_is_repeatable_and_never_reads_test(store):
    base = TrainConfig(model="mlp", epochs=2, patience=1)
    space = {"hidden": [16, 32, 64], "dropout": (0.0, 0.5), "batch_size": [16, 32]}
    a = tune(base, TuneConfig(trials=2, seed=3, space=space), store=store, dataset="mosi", features=None,
             out=store.parent / "a.yaml", progress=None)
    b = tune(base, TuneConfig(trials=2, seed=3, space=space), store=store, dataset="mosi", features=None,
             out=store.parent / "b.yaml", progress=None)
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    assert [t["valid"] for t in a["trials"]] == [t["valid"] for t in b["trials"]]
    cfg = apply_params(base, {"hidden": 16, "batch_size": 8})
    assert cfg.batch_size == 8 and cfg.model_cfg == {"hidden": 16}


def test_multi_seed_trials_score_the_mean_and_parallel_matches_sequential(store, capsys):
    base = TrainConfig(model="mlp", epochs=2, patience=1)
    space = {"hidden": [16, 32]}
    seq = tune(base, TuneConfig(trials=1, seed=0, space=space, seeds=[0, 1]), store=store, dataset="mosi",
               features=None, out=store.parent / "seq.yaml", progress=None)
    par = tune(base, TuneConfig(trials=1, seed=0, space=space, seeds=[0, 1], workers=2), store=store,
               dataset="mosi", features=None, out=store.parent / "par.yaml", progress=None)
    t = seq["trials"][0]
    assert t["seeds"] == [0, 1] and len(t["valid_per_seed"]) == 2
    assert t["valid"] == pytest.approx(sum(t["valid_per_seed"]) / 2)
    assert par["trials"][0]["valid_per_seed"] == t["valid_per_seed"]  # workers change speed, not results
    # Each per-seed value is what a plain single-seed run of that config gives.
    one = tune(base.model_copy(update={"seed": 1}), TuneConfig(trials=1, seed=0, space=space), store=store,
               dataset="mosi", features=None, out=store.parent / "one.yaml", progress=None)
    assert one["trials"][0]["valid"] == pytest.approx(t["valid_per_seed"][1])
    # The chosen config keeps the base seed; the seeds are recorded in the YAML header.
    assert yaml.safe_load((store.parent / "seq.yaml").read_text())["seed"] == 0
    assert "training seeds [0, 1]" in (store.parent / "seq.yaml").read_text()


def test_cli_errors_are_one_line_exit_2(store, tmp_path, capsys):
    rc, _, err = _cli(capsys, "train", "nosuchmodel", "--store", store, "--dataset", "mosi", "--out", tmp_path / "x")
    assert rc == 2 and "unknown model" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(capsys, "train", "mlp", "--store", store, "--dataset", "mosi", "--out", tmp_path / "r",
                      "--epochs", "1", "--quiet")
    assert rc == 0
    rc, _, err = _cli(capsys, "evaluate", tmp_path / "r", "--split", "test")
    assert rc == 2 and "split 'test' is absent" in err
    (tmp_path / "other.yaml").write_text("model: argf\n")
    rc, _, err = _cli(capsys, "train", "mlp", "--store", store, "--dataset", "mosi", "--config",
                      tmp_path / "other.yaml", "--out", tmp_path / "y")
    assert rc == 2 and "not 'mlp'" in err
    rc, _, err = _cli(capsys, "train", "mlp", "--store", store, "--dataset", "mosi", "--set", "nosuchkey=1",
                      "--out", tmp_path / "z")
    assert rc == 2 and "nosuchkey" in err


def test_baselines_on_the_same_features(store):
    maj = run_baseline("majority", store=store, dataset="mosi")
    # The train majority is negative (738 of 1447), so it scores the valid negatives only.
    assert maj["chosen"] == {"class": 0} and maj["valid"]["accuracy"] == pytest.approx(91 / 240)
    lr = run_baseline("logreg", store=store, dataset="mosi")
    assert lr["chosen"]["C"] > 0 and lr["valid"]["n"] == 240
    assert lr["valid"]["accuracy"] > 0.7 and "test" not in lr
