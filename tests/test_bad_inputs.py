"""Every class of bad input ends in one line naming the file (and the row and column) with exit 2, or in a
quarantine record with its reason: never a traceback, never wrong data stored with exit 0.

The inputs are generated here, around the embedded GRID clips (``data/corpus``) and the installed GloVe
package, through the real CLI entry point."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from affectflow.cli import main
from pipeline.assemble import quarantine_path
from pipeline.store import read_feature_set

GRID = Path(__file__).resolve().parents[1] / "data" / "corpus" / "grid"
TEXT_ONLY = {"text": [{"name": "glove"}], "audio": [], "video": []}


def _corpus(tmp_path: Path, rows: list[dict] | None = None, config: dict | None = None) -> tuple[Path, Path]:
    root = tmp_path / "corpus"
    shutil.copytree(GRID, root / "grid")
    if rows is not None:
        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    cfg = tmp_path / "extract.json"
    cfg.write_text(json.dumps(TEXT_ONLY if config is None else config))
    return root, cfg


def _rows() -> list[dict]:
    return [{"path": "grid/bbaf2n.mpg", "segment_id": "a", "segment_index": 0, "start": 0.0, "end": 1.5,
             "transcript": "bin blue", "score": 1.0, "label_bin": 1, "split": "train"},
            {"path": "grid/bbaf2n.mpg", "segment_id": "b", "segment_index": 1, "start": 1.5, "end": 3.0,
             "transcript": "at f two now", "score": -1.0, "label_bin": 0, "split": "train"}]


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def _extract(capsys, root: Path, cfg: Path, store: Path) -> tuple[int, str]:
    return _run(capsys, "extract", str(root), "--dataset", "d", "--store", str(store), "--config", str(cfg),
                "--no-progress")


def _one_line_exit_2(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("row,column,value,message", [
    (1, "label_bin", 7, "row 2, column 'label_bin': must be one of [0, 1]"),
    (0, "label_bin", "yes", "row 1, column 'label_bin': not a number"),
    (1, "score", "inf", "row 2, column 'score': not finite"),
    (0, "score", "good", "row 1, column 'score': not a number"),
    (0, "start", -1.0, "row 1, column 'start': negative"),
    (1, "start", "abc", "row 2, column 'start': not a number"),  # never read as "whole file"
    (1, "end", 1.0, "row 2, column 'end': not after start"),
    (0, "end", "", "row 1, column 'end': empty while the other bound is given"),
    (1, "segment_index", "x", "row 2, column 'segment_index': not a number"),
    (0, "segment_index", "", "row 1, column 'segment_index': empty"),
    (1, "segment_id", "a", "row 2, column 'segment_id': duplicate segment id"),
    (0, "split", "dev", "row 1, column 'split': must be one of"),
])
def test_a_bad_manifest_cell_is_one_line_naming_file_row_and_column(tmp_path, capsys, row, column, value, message):
    rows = _rows()
    rows[row][column] = value
    root, cfg = _corpus(tmp_path, rows)
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    _one_line_exit_2(rc, err, "manifest.csv", message)
    assert not (tmp_path / "store" / "d" / "extracted.parquet").exists()


def test_an_end_beyond_the_media_is_quarantined_with_its_reason(tmp_path, capsys):
    rows = _rows()
    rows[1]["end"] = 99.0  # the clip lasts 3 s
    root, cfg = _corpus(tmp_path, rows)
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    assert rc == 0, err
    fs = read_feature_set(tmp_path / "store", "d", "extracted")
    assert fs.missing["text"].tolist() == [False, True]  # the late segment has no feature, the other has
    q = pd.read_parquet(quarantine_path(tmp_path / "store", "d", "extracted"))
    late = q[q.segment_id == "b"]
    assert len(late) == 1 and "[1.50, 99.00] s ends beyond the media (2.98 s)" in late["reason"].iloc[0]


@pytest.mark.parametrize("config,message", [
    ({**TEXT_ONLY, "fps": -5}, "fps"),
    ({"text": [{"name": "glove", "config": {"vectors": "no/such/glove.txt"}}], "audio": [], "video": []},
     "GloVe vectors file 'no/such/glove.txt' does not exist"),
    ({"text": [{"name": "word2vec", "config": {"vectors": "no/such/w2v.txt"}}], "audio": [], "video": []},
     "does not exist"),
])
def test_a_bad_config_is_refused_when_it_loads(tmp_path, capsys, config, message):
    root, cfg = _corpus(tmp_path, _rows(), config)
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    _one_line_exit_2(rc, err, "extract.json", message)
    assert "quarantine" not in err and not (tmp_path / "store").exists()  # refused before any work


def test_a_non_utf8_sidecar_transcript(tmp_path, capsys):
    root, cfg = _corpus(tmp_path)  # folder scan: transcripts from <stem>.txt
    (root / "grid" / "bbaf2n.txt").write_bytes(b"bin blue \xff\xfe at f")
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    _one_line_exit_2(rc, err, "bbaf2n.txt", "not UTF-8")


def test_garbage_in_a_words_csv(tmp_path, capsys):
    rows = _rows()[:1]
    rows[0]["words"] = "words.csv"
    root, cfg = _corpus(tmp_path, rows)
    (root / "words.csv").write_text("word,start,end\nbin,0.1,0.4\nblue,zero,0.9\n")
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    _one_line_exit_2(rc, err, "words.csv", "row 2, column 'start': not a number")


def test_a_manifest_without_a_path_column(tmp_path, capsys):
    root, cfg = _corpus(tmp_path, [{"media": "grid/bbaf2n.mpg", "transcript": "bin blue"}])
    rc, err = _extract(capsys, root, cfg, tmp_path / "store")
    _one_line_exit_2(rc, err, "manifest.csv", "row 1", "no 'path' column")


def _csd(path: Path, features: np.ndarray, intervals: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        g = h5.create_group("Feats")
        v = g.create_group("data").create_group("vid1")
        v.create_dataset("features", data=features)
        v.create_dataset("intervals", data=intervals)
        g.create_group("metadata")
    return path


@pytest.mark.parametrize("features,intervals,message", [
    (np.ones((2, 3)), np.array([[0.0, 1.0], [2.0, 1.5]]), "video 'vid1', interval 1: start 2.0 is not <= end 1.5"),
    (np.array([[b"a", b"b"], [b"c", b"d"]]), np.array([[0.0, 1.0], [1.0, 2.0]]), "features hold |S1 values"),
])
def test_a_bad_csd_file(tmp_path, capsys, features, intervals, message):
    path = _csd(tmp_path / "f.csd", features, intervals)
    rc, err = _run(capsys, "import", "csd", str(path), "--store", str(tmp_path / "store"))
    _one_line_exit_2(rc, err, "f.csd", message)


class _HugeArray:
    """Pickles as ``numpy.ndarray((2**40,), "f8")``: 8 TiB asked for by the one allowed constructor."""

    def __reduce__(self):
        return (np.ndarray, ((1 << 40,), "f8"))


@pytest.mark.parametrize("content,message", [
    ({"text_train": np.array([[["0.5"]]], dtype=object), "train_mask": np.ones((1, 1)),
      "train_label": np.array([[[0.0, 1.0]]])}, "text_train holds object values, expected numbers"),
    ({"text_train": _HugeArray()}, "asks for a 8192.0 GiB array"),
])
def test_a_bad_pickle(tmp_path, capsys, content, message):
    path = tmp_path / "legacy.pickle"
    path.write_bytes(pickle.dumps(content, protocol=2))
    rc, err = _run(capsys, "import", "pickle", str(path), "--store", str(tmp_path / "store"), "--dataset", "m",
                   "--split-policy", "sections")
    _one_line_exit_2(rc, err, "legacy.pickle", message)
