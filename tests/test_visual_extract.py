"""The visual extractors through the project's extraction driver (``pipeline.extract``) on real clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.extract import ExtractConfig, ExtractorSpec, extract_item
from pipeline.extractors.base import MediaItem

CFG = ExtractConfig(text=[], audio=[], video=[ExtractorSpec(name="facet"),
                                              ExtractorSpec(name="face_crops", config={"clip_len": 8})])


def test_driver_aligns_facet_and_crops_and_explains_faceless_segments(clips_dir: Path) -> None:
    path = clips_dir / "pyfeat" / "face_noface.mov"  # the face leaves after ~2.4 s
    seg = pd.DataFrame({"segment_id": ["with", "without"], "segment_index": [0, 1], "start": [0.0, 3.5],
                        "end": [2.0, 6.0], "transcript": ["", ""]})
    res = extract_item(MediaItem("face_noface", path, seg), CFG)
    assert res.present["video"].tolist() == [True, False]
    assert res.present["video_face_crops"].tolist() == [True, False]
    assert res.vectors["video"].shape == (2, 30) and np.isfinite(res.vectors["video"][0]).all()
    assert res.vectors["video_face_crops"].shape == (2, 8 * 32 * 32)
    reasons = {(q["segment_id"], q["modality"]): q["reason"] for q in res.quarantine}
    assert reasons[("without", "video")].startswith("no face in the 60 sampled frames of the segment")
    assert res.notes["video"]["face_frames"] < res.notes["video"]["sampled_frames"]
    assert res.dim_names["video"][0] == "au01_inner_brow_raise_r"


def test_driver_quarantines_a_faceless_clip_with_the_reason(clips_dir: Path) -> None:
    path = clips_dir / "pyfeat" / "no_face.mp4"
    seg = pd.DataFrame({"segment_id": ["a"], "segment_index": [0], "start": [np.nan], "end": [np.nan],
                        "transcript": [""]})
    res = extract_item(MediaItem("no_face", path, seg), CFG)
    assert not res.present.get("video", np.array([False])).any()
    reasons = [q["reason"] for q in res.quarantine if q["modality"] == "video"]
    assert len(reasons) == 2 and all("no face in 95 sampled frames" in r for r in reasons)


def test_c3d_trains_on_crops_written_by_the_driver(tmp_path: Path) -> None:
    """Embedded GRID corpus (real clips, in the repo) -> driver -> crops column -> C3D -> feature set."""
    from pipeline.assemble import write_extracted
    from pipeline.corpus import load_corpus
    from pipeline.store import read_feature_set
    from pipeline.visual_cnn import C3DTrainConfig, train_c3d, write_c3d_features

    corpus = load_corpus(Path(__file__).resolve().parents[1] / "data" / "corpus")
    cfg = ExtractConfig(text=[], audio=[], video=[ExtractorSpec(name="face_crops", column="video_crops",
                                                                config={"clip_len": 8, "track": {"crop_size": 24}})])
    results = [extract_item(it, cfg) for it in corpus.items[:4]]
    write_extracted(results, store=tmp_path, dataset="grid", feature_set="crops", cfg=cfg)
    run = train_c3d(C3DTrainConfig(crops_feature_set="crops", modality="video_crops", epochs=1, batch_size=2),
                    store=tmp_path, dataset="grid", out_dir=tmp_path / "c3d")
    write_c3d_features(run, store=tmp_path, dataset="grid", crops_feature_set="crops", feature_set="c3d",
                       modality="video_crops")
    fs = read_feature_set(tmp_path, "grid", "c3d")
    assert fs.features["video"].shape == (4, 100) and not fs.missing["video"].any()
    assert np.isfinite(fs.features["video"]).all() and fs.features["video"].std(0).max() > 0
