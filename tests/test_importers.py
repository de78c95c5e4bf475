"""Legacy pickle and table importers on the real MOSI files, plus every input error."""

from __future__ import annotations

import pickle

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InputError, SplitError
from pipeline.importers.legacy_pickle import build_legacy_pickle, import_legacy_pickle
from pipeline.importers.splits import HONEST_MOSI_VALID_VIDEOS
from pipeline.importers.table import build_table, import_embedded_default, import_table
from pipeline.safe_pickle import safe_load
from pipeline.store import read_feature_set, store_summary


@pytest.fixture(scope="module")
def segments_csv(mosi_dir):
    return mosi_dir / "segments.csv"


@pytest.fixture(scope="module")
def raw_npz(mosi_dir):
    return mosi_dir / "bclstm_raw_features.dev.npz"


# ------------------------------------------------------------------------------------ legacy pickle


def test_pickle_honest_mosi_counts_labels_and_ids(tmp_path, mosi_pickle, segments_csv):
    path = import_legacy_pickle(mosi_pickle, store=tmp_path, dataset="mosi", segments=segments_csv)
    fs = read_feature_set(tmp_path, "mosi", "bclstm-context")
    seg = fs.segments
    assert seg["split"].value_counts().to_dict() == {"train": 1447, "valid": 240}
    assert {m: s.dim for m, s in fs.meta.modalities.items()} == {"text": 50, "audio": 50, "video": 50}
    assert set(seg.loc[seg.split == "valid", "video_id"]) == set(HONEST_MOSI_VALID_VIDEOS)
    assert int(seg.loc[seg.split == "valid", "label_bin"].sum()) == 149
    # Ids and scores come from segments.csv and agree with it row for row.
    ref = pd.read_csv(segments_csv).set_index("segment_id")
    assert set(seg["segment_id"]) == set(ref.index)
    r = ref.loc[seg["segment_id"]]
    assert (r["label_bin"].to_numpy() == seg["label_bin"].to_numpy()).all()
    assert np.allclose(r["sentiment_score"].to_numpy(), seg["score"].to_numpy(), atol=1e-6)
    assert (r["split"].to_numpy() == seg["split"].to_numpy()).all()
    # Labels and features match the masked one-hot arrays of the pickle itself.
    d = safe_load(mosi_pickle)
    mask = d["train_mask"].astype(bool)
    train = fs.split("train")
    assert np.array_equal(train.features["text"], d["text_train"][mask])
    assert np.array_equal(train.segments["label_bin"].to_numpy(), d["train_label"][mask].argmax(1))
    # The 21 blanked held-out videos are reported, not a crash.
    assert any("21 of 31 test-section videos" in n for n in fs.meta.extra["notes"])
    assert path.name == "bclstm-context.parquet"


def test_pickle_padded_rows_are_dropped_not_zero(mosi_pickle):
    d = safe_load(mosi_pickle)
    pad = d["train_mask"] == 0
    assert np.abs(d["text_train"][pad]).sum() > 0  # padding is not zero: the mask must be applied
    fs = build_legacy_pickle(mosi_pickle, dataset="mosi")
    assert len(fs) == int(d["train_mask"].sum() + d["test_mask"].sum())


def test_pickle_argf_policy_and_positional_ids(mosi_pickle):
    fs = build_legacy_pickle(mosi_pickle, dataset="mosi", split_policy="argf-mosi")
    assert fs.segments["split"].value_counts().to_dict() == {"train": 1141, "valid": 306, "test": 240}
    ids = fs.segments["segment_id"]
    assert ids.iloc[0] == "train-v000-u00" and ids.str.match(r"^(train|test)-v\d{3}-u\d{2}$").all()
    valid_videos = fs.segments.loc[fs.segments.split == "valid", "video_id"].unique()
    assert list(valid_videos) == [f"train-v{i:03d}" for i in range(49, 62)]


def test_pickle_full_test_section_without_ids(tmp_path, mosi_pickle, segments_csv):
    """A pickle with all 31 test videos present: 512 held-out rows, named positionally."""
    d = safe_load(mosi_pickle)
    rng = np.random.default_rng(0)
    blank = [i for i in range(31) if d["test_mask"][i].sum() == 0]
    for i, v in enumerate(blank):  # fill the blanked videos with real-looking rows (sizes sum to 512)
        n = 24 + (i < 8)
        d["test_mask"][v, :n] = 1
        d["test_label"][v, :n] = np.eye(2)[rng.integers(0, 2, n)]
        for m in ("text", "audio", "video"):
            d[f"{m}_test"][v, :n] = rng.normal(size=(n, 50))
    p = tmp_path / "full.pickle"
    p.write_bytes(pickle.dumps(d, protocol=2))
    fs = build_legacy_pickle(p, dataset="mosi", segments=segments_csv)
    assert fs.segments["split"].value_counts().to_dict() == {"train": 1447, "valid": 240, "test": 512}
    test_ids = fs.segments.loc[fs.segments.split == "test", "segment_id"]
    assert test_ids.str.match(r"^test-v\d{3}-u\d{2}$").all()
    fs2 = build_legacy_pickle(p, dataset="mosi", split_policy="argf-mosi")
    assert fs2.segments["split"].value_counts().to_dict() == {"train": 1141, "valid": 306, "test": 752}


def _toy(n_train=3, n_test=2, u=4, dim=2, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    d = {}
    for s, v in (("train", n_train), ("test", n_test)):
        mask = np.zeros((v, u))
        mask[:, :3] = 1
        d[f"{s}_mask"] = mask
        d[f"{s}_label"] = np.eye(2)[rng.integers(0, 2, (v, u))]
        for m in ("text", "audio", "video"):
            d[f"{m}_{s}"] = rng.normal(size=(v, u, dim)).astype(np.float32)
    return d


def _write(tmp_path, d, name="toy.pickle"):
    p = tmp_path / name
    p.write_bytes(pickle.dumps(d, protocol=2))
    return p


def test_pickle_without_test_section(tmp_path):
    d = {k: v for k, v in _toy().items() if not k.endswith("test") and not k.startswith("test")}
    fs = build_legacy_pickle(_write(tmp_path, d), dataset="toy", split_policy="sections")
    assert fs.segments["split"].unique().tolist() == ["train"] and len(fs) == 9


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("train_mask"), "wrong keys"),
        (lambda d: d.pop("audio_test"), "test section incomplete"),
        (lambda d: d.update(audio_train=d["audio_train"][:2]), "mismatched lengths between modalities"),
        (lambda d: d["text_train"].__setitem__((1, 2, 0), np.nan), "NaN/inf"),
        (lambda d: d["video_test"].__setitem__((0, 0, 1), np.inf), "NaN/inf"),
        (lambda d: d["train_label"].__setitem__((0, 0), [1, 1]), "not one-hot"),
    ],
)
def test_pickle_input_errors(tmp_path, mutate, match):
    d = _toy()
    mutate(d)
    p = _write(tmp_path, d)
    store = tmp_path / "store"
    with pytest.raises(InputError, match=match) as e:
        import_legacy_pickle(p, store=store, dataset="toy", split_policy="sections")
    assert str(p) in str(e.value)
    assert not store.exists()  # nothing half-written


def test_nan_in_padding_is_fine(tmp_path):
    d = _toy()
    d["text_train"][0, 3, :] = np.nan  # padded position (mask 0)
    fs = build_legacy_pickle(_write(tmp_path, d), dataset="toy", split_policy="sections")
    assert np.isfinite(fs.features["text"]).all()


def test_pickle_missing_file_and_unknown_policy(tmp_path, mosi_pickle):
    with pytest.raises(InputError, match="not found"):
        import_legacy_pickle(tmp_path / "nope.pickle", store=tmp_path, dataset="x")
    with pytest.raises(SplitError, match="unknown split policy 'leaky'"):
        import_legacy_pickle(mosi_pickle, store=tmp_path, dataset="x", split_policy="leaky")
    with pytest.raises(SplitError, match="defined for 62"):
        build_legacy_pickle(_write(tmp_path, _toy()), dataset="toy")  # honest-mosi on a non-MOSI file


def test_pickle_segments_in_wrong_order_is_caught(tmp_path, mosi_pickle, segments_csv):
    seg = pd.read_csv(segments_csv)
    order = list(dict.fromkeys(seg.video_id))
    order[0], order[1] = order[1], order[0]
    swapped = tmp_path / "swapped.csv"
    seg.set_index("video_id").loc[order].reset_index().to_csv(swapped, index=False)
    with pytest.raises(InputError, match="does not match the pickle"):
        build_legacy_pickle(mosi_pickle, dataset="mosi", segments=swapped)


# -------------------------------------------------------------------------------------------- table


def test_table_import_real_npz(tmp_path, segments_csv, raw_npz):
    path = import_table(segments_csv, raw_npz, store=tmp_path, dataset="mosi", feature_set="raw")
    fs = read_feature_set(tmp_path, "mosi", "raw")
    assert {m: s.dim for m, s in fs.meta.modalities.items()} == {"text": 100, "audio": 73, "video": 100}
    assert fs.segments["split"].value_counts().to_dict() == {"train": 1447, "valid": 240}
    z = np.load(raw_npz)
    assert np.array_equal(fs.features["audio"], z["audio"])
    assert (fs.segments["segment_id"].to_numpy() == z["segment_id"]).all()
    assert (fs.segments["label_bin"].to_numpy() == z["label_bin"]).all()
    assert fs.segments["transcript"].iloc[0].startswith("IM GONNA START")
    # readable as-is by pandas and duckdb
    df = pd.read_parquet(path)
    assert len(df) == 1687 and len(df["audio"].iloc[0]) == 73
    assert np.allclose(np.asarray(df["audio"].iloc[5], np.float32), z["audio"][5])
    n = duckdb.sql(f"select split, count(*) n from read_parquet('{path}') group by split order by split").fetchall()
    assert n == [("train", 1447), ("valid", 240)]


def test_table_argf_split_column_and_parquet_features(tmp_path, segments_csv, raw_npz):
    z = np.load(raw_npz)
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Parquet features file with half the rows: the other half is stored as missing.
    keep = np.arange(0, 1687, 2)
    t = pa.table({
        "segment_id": z["segment_id"][keep],
        "video": pa.FixedSizeListArray.from_arrays(pa.array(z["video"][keep].reshape(-1)), 100),
    })
    pq.write_table(t, tmp_path / "video.parquet")
    seg_pq = tmp_path / "segments.parquet"
    pd.read_csv(segments_csv).to_parquet(seg_pq)
    fs = build_table(seg_pq, [tmp_path / "video.parquet"], dataset="mosi", split_column="argf_split")
    assert fs.segments["split"].value_counts().to_dict() == {"train": 1141, "valid": 306, "test": 240}
    assert int(fs.missing["video"].sum()) == 1687 - len(keep)
    assert np.array_equal(fs.features["video"][keep], z["video"][keep])


def test_embedded_default(tmp_path):
    paths = import_embedded_default(tmp_path)
    assert [p.name for p in paths] == ["bclstm-raw.parquet"]
    (row,) = store_summary(tmp_path)
    assert row["dataset"] == "mosi" and row["feature_set"] == "bclstm-raw"
    assert row["modalities"] == {"text": "vector[100]", "audio": "vector[73]", "video": "vector[100]"}
    assert row["splits"] == {"train": {"rows": 1447, "positive": 709}, "valid": {"rows": 240, "positive": 149}}


def _seg_and_npz(tmp_path, segments_csv, raw_npz, n=40):
    seg = pd.read_csv(segments_csv).head(n)
    z = np.load(raw_npz)
    arrays = {"segment_id": z["segment_id"][:n], "text": z["text"][:n].copy(), "audio": z["audio"][:n].copy()}
    return seg, arrays


@pytest.mark.parametrize("case, match", [
    ("duplicate_ids", "row 4, column .segment_id.: duplicate segment id"),
    ("unknown_split", "unknown split names"),
    ("nan", "NaN/inf"),
    ("inf", "NaN/inf"),
    ("length", "mismatched lengths between modalities"),
    ("no_segment_id", "wrong keys"),
    ("unknown_id", "not in the segments table"),
    ("no_split_col", "lacks columns"),
    ("missing_file", "not found"),
    ("bad_index", "row 5, column .segment_index.: not a number"),
    ("bad_label", "row 3, column .label_bin.: must be one of"),
])
def test_table_input_errors(tmp_path, segments_csv, raw_npz, case, match):
    seg, arrays = _seg_and_npz(tmp_path, segments_csv, raw_npz)
    if case == "duplicate_ids":
        seg.loc[3, "segment_id"] = seg.loc[2, "segment_id"]
    elif case == "unknown_split":
        seg.loc[5, "split"] = "dev"
    elif case == "nan":
        arrays["text"][7, 3] = np.nan
    elif case == "inf":
        arrays["audio"][1, 0] = -np.inf
    elif case == "length":
        arrays["audio"] = arrays["audio"][:-1]
    elif case == "no_segment_id":
        arrays["ids"] = arrays.pop("segment_id")
    elif case == "unknown_id":
        arrays["segment_id"] = arrays["segment_id"].copy()
        arrays["segment_id"][0] = "nosuchvideo_1"
    elif case == "bad_index":
        seg["segment_index"] = seg["segment_index"].astype(object)
        seg.loc[4, "segment_index"] = "four"
    elif case == "bad_label":
        seg.loc[2, "label_bin"] = 2
    elif case == "no_split_col":
        seg = seg.drop(columns="split")
    seg_path, npz_path = tmp_path / "seg.csv", tmp_path / "feat.npz"
    seg.to_csv(seg_path, index=False)
    np.savez(npz_path, **arrays)
    if case == "missing_file":
        npz_path = tmp_path / "absent.npz"
    store = tmp_path / "store"
    with pytest.raises((InputError, SplitError), match=match) as e:
        import_table(seg_path, npz_path, store=store, dataset="mosi")
    assert str(seg_path) in str(e.value) or str(npz_path) in str(e.value)
    assert not store.exists()


def test_table_object_npz_refused(tmp_path, segments_csv):
    seg = pd.read_csv(segments_csv).head(3)
    seg.to_csv(tmp_path / "s.csv", index=False)
    np.savez(tmp_path / "o.npz", segment_id=seg.segment_id.to_numpy(dtype=object), text=np.zeros((3, 2)))
    with pytest.raises(InputError, match="pickle"):
        import_table(tmp_path / "s.csv", tmp_path / "o.npz", store=tmp_path / "st", dataset="x")


def test_label_is_a_class_name_in_every_reader(tmp_path, segments_csv, raw_npz):
    """One segment schema: `label` is a class name for the table importer as for the corpus loader (it used
    to be read as the binary label here), numbered into label_class with sorted label_names."""
    from pipeline.corpus import corpus_from_rows

    seg, arrays = _seg_and_npz(tmp_path, segments_csv, raw_npz, n=6)
    seg["label"] = ["neutral", "happy", "sad", "happy", "neutral", "sad"]
    seg.to_csv(tmp_path / "seg.csv", index=False)
    np.savez(tmp_path / "feat.npz", **arrays)
    import_table(tmp_path / "seg.csv", tmp_path / "feat.npz", store=tmp_path / "s", dataset="mosi")
    fs = read_feature_set(tmp_path / "s", "mosi", "table")
    assert fs.meta.label_names == ["happy", "neutral", "sad"]
    assert fs.segments["label_class"].tolist() == [1, 0, 2, 0, 1, 2]
    assert fs.segments["label_bin"].tolist() == seg["label_bin"].tolist()  # untouched by `label`
    corpus = corpus_from_rows(tmp_path, [{"video_id": "v", "segment_id": f"v_{i}", "transcript": "x", "label": name}
                                         for i, name in enumerate(seg["label"])])
    assert corpus.segments["label_class"].tolist() == [1, 0, 2, 0, 1, 2]
