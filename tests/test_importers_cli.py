"""`affectflow import ... / export csd / store info` end to end, through affectflow.cli.main."""

from __future__ import annotations

import pickle

import duckdb
import numpy as np
import pandas as pd
import pytest

from affectflow.cli import main


def test_import_pickle_then_store_info_pandas_duckdb(tmp_path, mosi_pickle, mosi_dir, capsys):
    store = tmp_path / "store"
    rc = main(["import", "pickle", str(mosi_pickle), "--dataset", "mosi", "--store", str(store),
               "--segments", str(mosi_dir / "segments.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "note: 21 of 31 test-section videos" in out and "wrote" in out
    assert main(["store", "info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "mosi/bclstm-context" in info and "text vector[50], audio vector[50], video vector[50]" in info
    assert "train   1447 rows  positive 709/1447" in info and "valid    240 rows  positive 149/240" in info

    path = store / "mosi" / "bclstm-context.parquet"
    df = pd.read_parquet(path)
    assert df["split"].value_counts().to_dict() == {"train": 1447, "valid": 240}
    assert len(df["text"].iloc[0]) == 50
    rows = duckdb.sql(
        f"select split, count(*), sum(label_bin) from read_parquet('{path}') group by split order by split"
    ).fetchall()
    assert rows == [("train", 1447, 709), ("valid", 240, 149)]


def test_import_pickle_argf_policy(tmp_path, mosi_pickle, capsys):
    store = tmp_path / "s"
    assert main(["import", "pickle", str(mosi_pickle), "--dataset", "mosi", "--store", str(store),
                 "--split-policy", "argf-mosi", "--feature-set", "argf"]) == 0
    out = capsys.readouterr().out
    assert "train   1141" in out and "valid    306" in out and "test     240" in out


def test_import_table_and_default_and_csd_export(tmp_path, mosi_dir, capsys):
    store = str(tmp_path / "s")
    assert main(["import", "table", "--segments", str(mosi_dir / "segments.csv"),
                 "--features", str(mosi_dir / "bclstm_raw_features.dev.npz"),
                 "--dataset", "mosi", "--store", store, "--split-column", "argf_split"]) == 0
    assert main(["import", "default", "--store", store]) == 0
    assert main(["import", "csd", str(mosi_dir / "CMU_MOSI_Opinion_Labels.csd"), "--store", store,
                 "--segments", str(mosi_dir / "segments.csv"), "--split", "test"]) == 0
    assert main(["export", "csd", "--store", store, "--dataset", "mosi", "--feature-set", "csd",
                 "--out", str(tmp_path / "csd")]) == 0
    assert (tmp_path / "csd" / "opinion_segment_labels.csd").is_file()
    capsys.readouterr()
    assert main(["store", "info", store, "--json"]) == 0
    import json

    rows = {r["feature_set"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"table", "bclstm-raw", "csd"}
    assert rows["bclstm-raw"]["splits"]["train"]["rows"] == 1447
    assert rows["table"]["splits"]["valid"]["rows"] == 306
    assert rows["csd"]["rows"] == 2199


@pytest.mark.parametrize("make_args, match", [
    (lambda t, m: ["import", "pickle", str(t / "nope.pickle"), "--dataset", "x"], "pickle file not found"),
    (lambda t, m: ["import", "pickle", str(m / "unimodal_mosi_2way.dev.pickle"), "--dataset", "x",
                   "--split-policy", "random"], "unknown split policy"),
    (lambda t, m: ["import", "pickle", str(t / "evil.pickle"), "--dataset", "x"], "refused to load pickle"),
    (lambda t, m: ["import", "table", "--segments", str(t / "dup.csv"), "--features",
                   str(m / "bclstm_raw_features.dev.npz"), "--dataset", "x"], "duplicate segment id"),
    (lambda t, m: ["import", "csd", str(t / "nope.csd")], "computational sequence not found"),
    (lambda t, m: ["export", "csd", "--dataset", "x", "--feature-set", "y", "--out", str(t / "o")], "no feature set"),
])
def test_cli_errors_one_line_exit_2(tmp_path, mosi_dir, capsys, make_args, match):
    (tmp_path / "evil.pickle").write_bytes(b"cos\nsystem\n(Vtouch " + str(tmp_path / "pwned").encode() + b"\ntR.")
    seg = pd.read_csv(mosi_dir / "segments.csv")
    seg.loc[1, "segment_id"] = seg.loc[0, "segment_id"]
    seg.to_csv(tmp_path / "dup.csv", index=False)
    store = tmp_path / "store"
    rc = main([*make_args(tmp_path, mosi_dir), "--store", str(store)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("affectflow ") and match in err[0]
    assert not (tmp_path / "pwned").exists()
    assert not store.exists()  # nothing half-written


@pytest.mark.parametrize("argv", [
    ["import", "--help"], ["import", "pickle", "--help"], ["import", "csd", "--help"],
    ["import", "table", "--help"], ["import", "default", "--help"], ["export", "--help"], ["export", "csd", "--help"],
])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage: affectflow" in capsys.readouterr().out


def test_mismatched_modalities_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    d = {"train_mask": np.ones((2, 3)), "train_label": np.eye(2)[rng.integers(0, 2, (2, 3))],
         "text_train": rng.normal(size=(2, 3, 4)), "audio_train": rng.normal(size=(2, 2, 4))}
    (tmp_path / "m.pickle").write_bytes(pickle.dumps(d, protocol=2))
    rc = main(["import", "pickle", str(tmp_path / "m.pickle"), "--dataset", "toy", "--store", str(tmp_path / "s"),
               "--split-policy", "sections"])
    assert rc == 2 and "mismatched lengths between modalities" in capsys.readouterr().err
