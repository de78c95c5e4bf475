"""Corpus input: manifests, folders with sidecars, transcript-only rows, MOUD, and path escapes."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from pipeline.corpus import load_corpus, read_align, safe_path
from pipeline.errors import InputError


def _grid(clips_dir, tmp_path, names=("bbaf2n", "lbax4n")):
    root = tmp_path / "corpus"
    (root / "v").mkdir(parents=True)
    for n in names:
        shutil.copy(clips_dir / "grid_lipnet" / f"{n}.mpg", root / "v" / f"{n}.mpg")
    return root


def test_manifest_with_segments_labels_and_split(clips_dir, tmp_path):
    root = _grid(clips_dir, tmp_path)
    pd.DataFrame({
        "path": ["v/bbaf2n.mpg", "v/bbaf2n.mpg", "v/lbax4n.mpg"],
        "start": [0.0, 1.5, None], "end": [1.5, 3.0, None],
        "transcript": ["bin blue at", "f two now", "lay blue at x four now"],
        "label": ["bin", "bin", "lay"], "split": ["train", "train", "valid"],
    }).to_csv(root / "manifest.csv", index=False)
    c = load_corpus(root)
    assert c.source == "manifest.csv" and len(c.items) == 2 and len(c.segments) == 3
    a = next(i for i in c.items if i.item_id == "v/bbaf2n")
    assert a.path == (root / "v" / "bbaf2n.mpg").resolve() and a.segments["segment_id"].tolist() == ["v/bbaf2n_0", "v/bbaf2n_1"]
    assert c.label_names == ["bin", "lay"] and c.segments["label_class"].tolist() == [0, 0, 1]
    whole = next(i for i in c.items if i.item_id == "v/lbax4n").segments
    assert whole["start"].isna().all() and whole["split"].tolist() == ["valid"]


@pytest.mark.parametrize("bad", ["../outside.mpg", "v/../../outside.mpg", "/etc/passwd"])
def test_paths_escaping_the_corpus_are_refused(clips_dir, tmp_path, bad):
    root = _grid(clips_dir, tmp_path)
    (tmp_path / "outside.mpg").write_bytes(b"x")
    pd.DataFrame({"path": [bad], "transcript": ["x"]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(InputError, match="escapes the corpus folder|is absolute"):
        load_corpus(root)


def test_symlink_out_of_the_corpus_is_refused(clips_dir, tmp_path):
    root = _grid(clips_dir, tmp_path)
    os.symlink(clips_dir / "grid_lipnet" / "swiz3n.mpg", root / "v" / "link.mpg")
    with pytest.raises(InputError, match="escapes"):
        safe_path(root, "v/link.mpg")
    pd.DataFrame({"path": ["v/link.mpg"]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(InputError, match="escapes"):
        load_corpus(root)


def test_missing_media_and_bad_split_are_clear_errors(clips_dir, tmp_path):
    root = _grid(clips_dir, tmp_path)
    pd.DataFrame({"path": ["v/nope.mpg"]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(InputError, match="does not exist"):
        load_corpus(root)
    pd.DataFrame({"path": ["v/bbaf2n.mpg"], "split": ["dev"]}).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(InputError, match="row 1, column .split.: must be one of"):
        load_corpus(root)


def test_folder_without_manifest_uses_sidecars(clips_dir, tmp_path):
    root = _grid(clips_dir, tmp_path, names=("bbaf2n",))
    (root / "v" / "bbaf2n.txt").write_text("bin blue at f two now\n")
    shutil.copy(clips_dir / "lrs2_deep_avsr" / "00002.mp4", root / "v" / "00002.mp4")
    shutil.copy(clips_dir / "lrs2_deep_avsr" / "00002.txt", root / "v" / "00002.txt")  # LRS2 "Text:" sidecar
    c = load_corpus(root)
    assert c.source == "folder scan"
    t = dict(zip(c.segments["video_id"], c.segments["transcript"], strict=True))
    assert t == {"v/00002": "AFTER JUST A COUPLE OF DAYS", "v/bbaf2n": "bin blue at f two now"}


def test_transcript_only_rows_mosi(mosi_dir):
    c = load_corpus(mosi_dir / "segments.csv")
    assert len(c.segments) == 1687 and len(c.items) == 72
    assert all(i.path is None for i in c.items)
    assert c.segments["split"].value_counts().to_dict() == {"train": 1447, "valid": 240}
    assert c.segments["label_bin"].isin([0, 1]).all()


def test_moud_video_with_utterance_timestamps():
    from conftest import shared_path

    c = load_corpus(shared_path("moud"))
    assert len(c.items) == 1  # only 101_movies has a video; the other transcriptions are not items
    item = c.items[0]
    assert item.path.name == "101_movies.mp4" and len(item.segments) == 5
    s = item.segments
    assert s["start"].iloc[0] == 0.0 and s["end"].iloc[0] == pytest.approx(6.643)
    assert (s["start"].iloc[1:].to_numpy() == s["end"].iloc[:-1].to_numpy()).all()
    assert s["transcript"].iloc[0].startswith("Y lo que me encanto") and (s["label_bin"] == 1).all()


def test_grid_align_units(clips_dir):
    w = read_align(clips_dir / "grid_lipnet" / "swwp2s.align")
    assert w["start"].iloc[0] == pytest.approx(12250 / 25000) and w["end"].iloc[-1] == pytest.approx(55250 / 25000)


def test_shared_clips_manifest_loads(clips_dir):
    c = load_corpus(clips_dir)
    assert len(c.items) == 50 and all(i.path is not None and i.path.is_file() for i in c.items)
