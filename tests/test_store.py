"""The Parquet feature store: round trip, missing modalities, metadata checks, atomic writes."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError, SplitError, StoreError
from pipeline.store import (
    FeatureSet,
    ModalitySpec,
    Producer,
    feature_set_path,
    make_meta,
    read_feature_set,
    store_summary,
    write_feature_set,
)


def _fs(n: int = 6, seq: bool = True) -> FeatureSet:
    rng = np.random.default_rng(0)
    seg = pd.DataFrame(
        {
            "video_id": ["v1"] * 3 + ["v2"] * (n - 3),
            "segment_id": [f"s{i}" for i in range(n)],
            "segment_index": list(range(n)),
            "start": [0.0, 1.0, None, 0.0, 1.0, 2.0][:n],
            "end": [1.0, 2.0, None, 1.0, 2.0, 3.0][:n],
            "split": ["train", "train", "valid", "train", "test", "test"][:n],
            "label_bin": [0, 1, 1, 0, 1, 0][:n],
        }
    )
    mods = {"audio": ModalitySpec(kind="vector", dim=4, dim_names=list("abcd"))}
    feats: dict = {"audio": rng.normal(size=(n, 4)).astype(np.float32)}
    if seq:
        mods["text"] = ModalitySpec(kind="sequence", dim=3)
        feats["text"] = [rng.normal(size=(i + 1, 3)).astype(np.float32) for i in range(n - 1)] + [None]
    meta = make_meta(
        dataset="toy", feature_set="raw", modalities=mods,
        producer=Producer.of("importer", "test", {"x": 1}), source_hash="abc",
    )
    missing = {"audio": np.array([False, True] + [False] * (n - 2))}
    return FeatureSet(meta, seg, feats, missing)


def test_round_trip_vectors_sequences_and_missing(tmp_path):
    fs = _fs()
    write_feature_set(tmp_path, fs)
    back = read_feature_set(tmp_path, "toy", "raw")
    assert list(back.segments["segment_id"]) == list(fs.segments["segment_id"])
    assert back.missing["audio"].tolist() == fs.missing["audio"].tolist()
    keep = ~fs.missing["audio"]
    np.testing.assert_array_equal(back.features["audio"][keep], fs.features["audio"][keep])
    assert back.features["text"][-1] is None
    for a, b in zip(back.features["text"][:-1], fs.features["text"][:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.meta.modalities["audio"].dim_names == list("abcd")
    assert pd.isna(back.segments.loc[2, "start"])


def test_readable_by_pandas_and_duckdb(tmp_path):
    path = write_feature_set(tmp_path, _fs())
    df = pd.read_parquet(path)
    assert len(df) == 6 and {"segment_id", "audio", "split"} <= set(df.columns)
    n = duckdb.sql(f"select count(*) from read_parquet('{path}') where split = 'train'").fetchall()[0][0]
    assert n == 3


def test_split_absent_is_an_error(tmp_path):
    write_feature_set(tmp_path, _fs())
    with pytest.raises(SplitError, match="absent"):
        read_feature_set(tmp_path, "toy", "raw", splits=["nope"])
    fs = read_feature_set(tmp_path, "toy", "raw")
    assert len(fs.split("test")) == 2


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda fs: fs.segments.__setitem__("segment_id", ["s0"] * 6), "duplicate segment ids"),
        (lambda fs: fs.segments.__setitem__("split", ["train", "dev", "valid", "train", "test", "test"]), "unknown split"),
        (lambda fs: fs.features["audio"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda fs: fs.features.__setitem__("audio", fs.features["audio"][:5]), "rows"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, mutate, match):
    fs = _fs()
    mutate(fs)
    with pytest.raises(InputError, match=match):
        write_feature_set(tmp_path, fs)
    assert not list(tmp_path.rglob("*.parquet")) and [p.name for p in tmp_path.rglob(".*")] in ([], [".lock"])


def test_reader_refuses_missing_or_inconsistent_metadata(tmp_path):
    path = write_feature_set(tmp_path, _fs())
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({}), path)
    with pytest.raises(StoreError, match="no affectflow metadata"):
        read_feature_set(tmp_path, "toy", "raw")
    meta = table.schema.metadata[b"affectflow"].replace(b'"dim":4', b'"dim":5')
    pq.write_table(table.replace_schema_metadata({b"affectflow": meta}), path)
    with pytest.raises(StoreError, match="does not match its checksum"):  # edited without its hash
        read_feature_set(tmp_path, "toy", "raw")
    digest = hashlib.sha256(meta).hexdigest().encode()
    pq.write_table(table.replace_schema_metadata({b"affectflow": meta, b"affectflow.sha256": digest}), path)
    with pytest.raises(StoreError, match="dim 5"):
        read_feature_set(tmp_path, "toy", "raw")


def test_summary_counts_splits_and_balance(tmp_path):
    write_feature_set(tmp_path, _fs())
    (row,) = store_summary(tmp_path)
    assert row["splits"]["train"] == {"rows": 3, "positive": 1}
    assert row["modalities"] == {"audio": "vector[4]", "text": "sequence[3]"}
    assert feature_set_path(tmp_path, "toy", "raw").exists()
