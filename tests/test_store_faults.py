"""Faults around the store: a flipped byte is refused by every reader, a second writer is refused, free
space is checked before the work, stale temp files go, and an extraction killed with -9 after N items
resumes (finished items are not redone) and ends with the same store as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from affectflow.cli import main
from pipeline.engine import KILL_AT_ENV, extract_corpus, payload_dir
from pipeline.errors import StoreError
from pipeline.extract import ExtractConfig, ExtractorSpec
from pipeline.store import (
    FeatureSet,
    ModalitySpec,
    Producer,
    dataset_writer,
    make_meta,
    read_feature_set,
    store_summary,
    write_feature_set,
)

AFFECTFLOW = [sys.executable, "-m", "affectflow"]
TEXT_ONLY = ExtractConfig(text=[ExtractorSpec(name="glove", keep_sequence=True)], audio=[], video=[])
WORDS = ["good", "bad", "movie", "acting", "great", "plot", "boring", "fun", "story", "actor"]


def _fs(n: int = 400, dim: int = 16) -> FeatureSet:
    rng = np.random.default_rng(0)
    seg = pd.DataFrame({"video_id": [f"v{i // 4}" for i in range(n)], "segment_id": [f"s{i}" for i in range(n)],
                        "segment_index": np.arange(n) % 4, "split": "train", "label_bin": np.arange(n) % 2})
    meta = make_meta(dataset="toy", feature_set="raw", modalities={"audio": ModalitySpec(kind="vector", dim=dim)},
                     producer=Producer.of("derived", "test", {}), source_hash="x")
    return FeatureSet(meta, seg, {"audio": rng.standard_normal((n, dim)).astype(np.float32)})


def _silent_flip(path: Path, column: str, good: np.ndarray) -> None:
    """Flip one byte in the column's data pages (footer intact) such that a plain read, without page
    checksums, returns wrong numbers without complaint: the damage only a checksum can catch."""
    md = pq.ParquetFile(path).metadata
    col = next(md.row_group(0).column(i) for i in range(md.num_columns)
               if md.row_group(0).column(i).path_in_schema.startswith(column))
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    clean = path.read_bytes()
    footer = clean[-(md.serialized_size + 8):]
    for at in range(start + col.total_compressed_size - 1, col.data_page_offset + 32, -7):
        raw = bytearray(clean)
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))
        try:
            values = pq.read_table(path).column(column).combine_chunks().storage.flatten().to_numpy()
        except (OSError, ValueError):
            continue
        if values.size == good.size and not np.array_equal(values.reshape(good.shape), good):
            assert path.read_bytes()[-len(footer):] == footer
            return
    pytest.fail("no byte of the data pages changes the values silently")


def test_a_flipped_byte_in_a_data_page_is_refused_by_every_reader(tmp_path, capsys):
    path = write_feature_set(tmp_path, _fs())
    good = read_feature_set(tmp_path, "toy", "raw").features["audio"]
    _silent_flip(path, "audio", good)
    with pytest.raises(StoreError, match="raw.parquet: corrupted data, refused"):
        read_feature_set(tmp_path, "toy", "raw")  # what train, evaluate, tune and the flows read through
    (row,) = store_summary(tmp_path)
    assert "corrupted data" in row["error"]
    assert main(["store", "info", str(tmp_path)]) == 1
    assert "!! " in capsys.readouterr().out


def test_a_second_writer_is_refused_with_a_clear_message(tmp_path):
    store = tmp_path / "store"
    with dataset_writer(store, "mosi"):  # the barrier: this test process is the first writer
        res = subprocess.run([*AFFECTFLOW, "import", "default", "--store", str(store)], capture_output=True,
                             text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "another process is writing to this dataset (pid" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (store / "mosi" / "bclstm-raw.parquet").exists()
    res = subprocess.run([*AFFECTFLOW, "import", "default", "--store", str(store)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr  # the lock went with its holder


def test_free_space_is_checked_before_the_work_and_stale_temp_files_go(tmp_path):
    stale = tmp_path / "toy" / ".raw.parquet.k1ll3d.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StoreError, match="not enough free space"), dataset_writer(tmp_path, "toy", need_bytes=free):
        pytest.fail("the writer must refuse before its body runs")
    write_feature_set(tmp_path, _fs())
    assert not stale.exists()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write into: chmod for a normal user; for root (who ignores permissions) the
    immutable attribute, which binds root too."""
    d = tmp_path / "store" / "d"
    d.mkdir(parents=True)
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only for this test")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)


def test_a_read_only_store_is_refused_before_the_work(tmp_path, read_only_dir, capsys):
    corpus = _text_corpus(tmp_path / "corpus")
    rc = main(["extract", str(corpus), "--dataset", "d", "--store", str(tmp_path / "store"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not writable" in err and len(err.splitlines()) == 1, err
    assert not payload_dir(tmp_path / "store", "d").exists()  # refused before any item was extracted


def _text_corpus(root: Path, n_items: int = 6) -> Path:
    rng = np.random.default_rng(1)
    rows = [{"video_id": f"v{i}", "segment_id": f"v{i}_{k}", "transcript": " ".join(rng.choice(WORDS, 5)),
             "score": float(rng.normal()), "split": "train" if i % 3 else "valid"}
            for i in range(n_items) for k in range(3)]
    root.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _same_store(a: Path, b: Path) -> None:
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*.parquet") if ".cache" not in p.parts)
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*.parquet") if ".cache" not in p.parts) != []
    for name in files:
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        assert ta.replace_schema_metadata(None).equals(tb.replace_schema_metadata(None)), name


@pytest.mark.parametrize("kill_at,done_before,workers", [("extract:3", 3, 1), ("write:2", 6, 1), ("extract:3", None, 2)])
def test_kill_9_then_rerun_resumes_and_gives_the_uninterrupted_store(tmp_path, kill_at, done_before, workers):
    """With 2 worker processes the parent is killed while a worker may be mid-item: at least the 3
    outcomes it saw are kept, and the workers die with it (else `subprocess.run` would wait on their pipes)."""
    corpus = _text_corpus(tmp_path / "corpus")
    cfg = tmp_path / "extract.json"
    cfg.write_text(TEXT_ONLY.model_dump_json())
    ref = extract_corpus(corpus, store=tmp_path / "ref", dataset="d", cfg=TEXT_ONLY)
    store = tmp_path / "store"
    cmd = [*AFFECTFLOW, "extract", str(corpus), "--dataset", "d", "--store", str(store), "--config", str(cfg),
           "--no-progress", "--json", "--workers", str(workers)]
    killed = subprocess.run(cmd, env={**os.environ, KILL_AT_ENV: kill_at}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (store / "d" / "extracted.parquet").exists()
    # kept: each item was written as it finished
    kept = len(list(payload_dir(store, "d").glob("*.json")))
    assert kept == done_before if done_before is not None else 3 <= kept <= 6
    done_before = kept
    left = [p.name for p in (store / "d").glob(".*.tmp")]
    assert len(left) == (kill_at.startswith("write")), left  # killed mid-write: half a file, hidden

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["n_cached"], summary["n_computed"], summary["n_items"]) == (done_before, 6 - done_before, 6)
    _same_store(store, tmp_path / "ref")
    assert summary["n_segments"] == ref.n_segments == 18
    assert not [p for p in store.rglob("*") if p.name.endswith(".tmp")]


def test_each_item_is_one_row_group_of_the_feature_set(tmp_path):
    corpus = _text_corpus(tmp_path / "corpus", n_items=5)
    s = extract_corpus(corpus, store=tmp_path / "store", dataset="d", cfg=TEXT_ONLY)
    for name in ("extracted", "extracted.seq"):
        assert pq.ParquetFile(tmp_path / "store" / "d" / f"{name}.parquet").num_row_groups == s.n_items == 5


def test_a_damaged_cached_item_is_refused_then_recomputed(tmp_path, capsys):
    corpus = _text_corpus(tmp_path / "corpus", n_items=4)
    extract_corpus(corpus, store=tmp_path / "ref", dataset="d", cfg=TEXT_ONLY)
    extract_corpus(corpus, store=tmp_path / "store", dataset="d", cfg=TEXT_ONLY)
    victim = sorted(payload_dir(tmp_path / "store", "d").glob("*.npz"))[1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside a zip member: its CRC no longer matches
    victim.write_bytes(bytes(raw))
    cfg = tmp_path / "extract.json"
    cfg.write_text(TEXT_ONLY.model_dump_json())
    argv = ["extract", str(corpus), "--dataset", "d", "--store", str(tmp_path / "store"), "--config", str(cfg),
            "--no-progress", "--json"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is damaged" in err and "run again" in err and len(err.splitlines()) == 1, err
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_computed"], summary["n_cached"]) == (1, 3)
    _same_store(tmp_path / "store", tmp_path / "ref")
