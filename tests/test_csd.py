"""CMU-MultimodalSDK .csd: exact round trips of the real MOSI labels file, store mapping, mmsdk as oracle."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from mmsdk import mmdatasdk

from pipeline.errors import InputError
from pipeline.importers.csd import (
    ComputationalSequence,
    build_csd,
    export_csd,
    import_csd,
    read_csd,
    write_csd,
)
from pipeline.store import read_feature_set

ROOT = "Opinion Segment Labels"


@pytest.fixture(scope="module")
def labels_csd(mosi_dir):
    return mosi_dir / "CMU_MOSI_Opinion_Labels.csd"


def _h5_dump(path):
    """Everything a .csd holds, straight from HDF5 (independent of our reader)."""
    with h5py.File(path, "r") as f:
        (root,) = list(f)
        data = {
            v: {k: f[root]["data"][v][k][()] for k in ("features", "intervals")} for v in f[root]["data"]
        }
        meta = {k: f[root]["metadata"][k][()].tolist() for k in f[root]["metadata"]}
    return root, data, meta


def _assert_identical(a, b):
    ra, da, ma = _h5_dump(a)
    rb, db, mb = _h5_dump(b)
    assert ra == rb and sorted(da) == sorted(db) and ma == mb
    for v in da:
        for k in ("features", "intervals"):
            assert da[v][k].dtype == db[v][k].dtype, (v, k)
            assert np.array_equal(da[v][k], db[v][k]), (v, k)


def test_read_write_round_trip_is_exact(tmp_path, labels_csd):
    cs = read_csd(labels_csd)
    assert cs.root_name == ROOT and len(cs.data) == 93 and cs.dim == 1
    assert cs.dimension_names() == ["sentiment score"]
    assert cs.metadata["dataset name"] == '"CMU-MOSI"'
    out = write_csd(cs, tmp_path / "copy.csd")
    _assert_identical(labels_csd, out)


def test_store_round_trip_is_exact(tmp_path, labels_csd, mosi_dir):
    store = tmp_path / "store"
    import_csd([labels_csd], store=store, dataset="mosi", segments=mosi_dir / "segments.csv", default_split="test")
    fs = read_feature_set(store, "mosi", "csd")
    assert len(fs) == 2199  # one row per interval, all 93 videos
    assert fs.segments["split"].value_counts().to_dict() == {"train": 1447, "valid": 240, "test": 512}
    # The sentiment-score sequence fills the labels; ids line up with segments.csv.
    first = fs.segments.set_index("segment_id").loc["zhpQhgha_KU_1"]
    assert first["score"] == pytest.approx(-1.6) and first["label_bin"] == 0
    (path,) = export_csd(store=store, dataset="mosi", feature_set="csd", out=tmp_path / "out")
    _assert_identical(labels_csd, path)


def test_mmsdk_reads_what_we_write(tmp_path, labels_csd):
    out = write_csd(read_csd(labels_csd), tmp_path / "ours.csd")
    ours = mmdatasdk.computational_sequence(str(out))
    theirs = mmdatasdk.computational_sequence(str(labels_csd))
    assert sorted(ours.data) == sorted(theirs.data)
    for v in theirs.data:
        assert np.array_equal(ours.data[v]["features"][()], theirs.data[v]["features"][()])
        assert np.array_equal(ours.data[v]["intervals"][()], theirs.data[v]["intervals"][()])
    assert dict(ours.metadata) == dict(theirs.metadata) and len(theirs.metadata) == 13


def test_export_of_non_csd_feature_set_is_sdk_readable(tmp_path, mosi_dir):
    from pipeline.importers.table import import_table

    import_table(mosi_dir / "segments.csv", mosi_dir / "bclstm_raw_features.dev.npz", store=tmp_path, dataset="mosi")
    paths = export_csd(store=tmp_path, dataset="mosi", feature_set="table", out=tmp_path / "out", modalities=["audio"])
    cs = mmdatasdk.computational_sequence(str(paths[0]))
    assert len(cs.data) == 72
    total = sum(cs.data[v]["features"].shape[0] for v in cs.data)
    assert total == 1687 and cs.data["zhpQhgha_KU"]["features"].shape[1] == 73
    # every key the SDK's deploy() would otherwise ask for with input() is present
    from mmsdk.mmdatasdk.configurations.metadataconfigs import featuresetMetadataTemplate

    assert set(featuresetMetadataTemplate) <= set(cs.metadata)
    # and back into the store: same features, same segment ids
    back = build_csd(paths, dataset="mosi", score_from=None)
    orig = read_feature_set(tmp_path, "mosi", "table")
    b = back.segments.set_index("segment_id")
    rows = b.index.get_indexer(orig.segments["segment_id"])
    assert (rows >= 0).all()
    assert np.array_equal(back.features["audio"][rows], orig.features["audio"])


def _toy_cs(root="Toy Feats", dim=3, seed=0, videos=("a", "b")):
    rng = np.random.default_rng(seed)
    data = {}
    for i, v in enumerate(videos):
        n = 2 + i
        iv = np.cumsum(rng.uniform(0.5, 1.0, (n, 2)), axis=None).reshape(n, 2).astype(np.float32)
        data[v] = {"features": rng.normal(size=(n, dim)).astype(np.float32), "intervals": iv}
    return ComputationalSequence(root, data, {"root name": f'"{root}"', "dimension names": "null"})


def test_combine_several_csd_as_modalities(tmp_path):
    a = _toy_cs("Audio Feats", 3, 0)
    b = _toy_cs("Video Feats", 5, 1)
    b.data = {v: {"features": b.data[v]["features"], "intervals": a.data[v]["intervals"]} for v in a.data}
    c = ComputationalSequence("Text", {"a": {"features": np.ones((2, 2), np.float32), "intervals": a.data["a"]["intervals"]}}, {})
    paths = [write_csd(x, tmp_path / f"{x.root_name}.csd") for x in (a, b, c)]
    fs = build_csd(paths, dataset="toy")
    assert set(fs.features) == {"audio_feats", "video_feats", "text"}
    assert len(fs) == 5 and fs.missing["text"].tolist() == [False, False, True, True, True]
    assert "score" not in fs.segments  # no sentiment sequence among them


def test_csd_errors(tmp_path):
    a = _toy_cs()
    # mismatched lengths between features and intervals
    bad = _toy_cs()
    bad.data["a"]["intervals"] = bad.data["a"]["intervals"][:1]
    with pytest.raises(InputError, match="mismatched lengths"):
        read_csd(write_csd(bad, tmp_path / "bad.csd"))
    # NaN
    nan = _toy_cs()
    nan.data["b"]["features"][1, 1] = np.nan
    p = write_csd(nan, tmp_path / "nan.csd")
    with pytest.raises(InputError, match="NaN/inf") as e:
        import_csd([p], store=tmp_path / "store", dataset="toy")
    assert str(p) in str(e.value) and not (tmp_path / "store").exists()
    # intervals that do not agree between files
    other = _toy_cs("Other", seed=5)
    with pytest.raises(InputError, match="intervals differ"):
        build_csd([write_csd(a, tmp_path / "a.csd"), write_csd(other, tmp_path / "o.csd")], dataset="toy")
    # wrong keys / not HDF5 / missing
    with h5py.File(tmp_path / "wrong.csd", "w") as f:
        f.create_group("root").create_group("stuff")
    with pytest.raises(InputError, match="wrong keys"):
        read_csd(tmp_path / "wrong.csd")
    (tmp_path / "text.csd").write_text("hello")
    with pytest.raises(InputError, match="not an HDF5"):
        read_csd(tmp_path / "text.csd")
    with pytest.raises(InputError, match="not found"):
        read_csd(tmp_path / "absent.csd")
    from pipeline.errors import SplitError

    with pytest.raises(SplitError, match="unknown split names"):
        build_csd([tmp_path / "a.csd"], dataset="toy", default_split="holdout")
