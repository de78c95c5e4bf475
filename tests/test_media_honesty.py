"""Media honesty on clips these tests write with PyAV: a display-matrix rotation is applied before face
tracking (a rotated clip extracts like its upright copy), and a stream that ends before its declared
duration is reported for every modality it affects, never featurised from the part that survived."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from pipeline.extract import ExtractConfig, ExtractorSpec, extract_item
from pipeline.extractors.base import MediaItem
from pipeline.extractors.face import FaceTrackConfig, track_faces
from pipeline.extractors.landmarks import inter_ocular
from pipeline.media import open_media

FACE_CLIP = ("pyfeat", "single_face.mp4")  # 640x360, one frontal face, 2.4 s


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def write_mp4(path: Path, frames: list[np.ndarray], *, rotation: int = 0, seconds_of_tone: float = 0.0,
              faststart: bool = False) -> Path:
    """H.264 at 25 fps (+ an AAC tone when asked); ``rotation`` goes into the display matrix."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        v = out.add_stream("libx264", rate=25)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=16000, layout="mono") if seconds_of_tone else None
        for img in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        out.mux(v.encode())
        if a is not None:
            t = np.arange(int(seconds_of_tone * 16000)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for k in range(0, wave.size, 1024):
                af = av.AudioFrame.from_ndarray(wave[None, k: k + 1024], format="fltp", layout="mono")
                af.sample_rate = 16000
                out.mux(a.encode(af))
            out.mux(a.encode())
    return path


def _item(path: Path, start: float = np.nan, end: float = np.nan) -> MediaItem:
    seg = pd.DataFrame({"segment_id": ["s0"], "segment_index": [0], "start": [start], "end": [end],
                        "transcript": [""]})
    return MediaItem(path.stem, path, seg)


def test_rotated_clip_tracks_like_its_upright_copy(clips_dir: Path, tmp_path: Path) -> None:
    upright_frames = _frames(clips_dir.joinpath(*FACE_CLIP))
    upright = write_mp4(tmp_path / "upright.mp4", upright_frames)
    # a phone's recording: pixels stored turned a quarter clockwise, the display matrix turns them back
    rotated = write_mp4(tmp_path / "rotated.mp4", [np.rot90(f, -1) for f in upright_frames], rotation=90)
    media = open_media(rotated)
    assert (media.info.video.width, media.info.video.height) == (360, 640)  # as coded
    first = next(iter(media.frames(fmt="gray")))[1]
    assert first.shape == (360, 640) and media.rotation == 90 and media.frame_size == (640, 360)

    cfg = FaceTrackConfig()
    a, b = track_faces(_item(upright), None, cfg), track_faces(_item(rotated), None, cfg)
    assert b.frame_size == a.frame_size == (640, 360)
    assert len(b.frames) == len(a.frames) >= 0.9 * a.n_sampled
    err = [np.linalg.norm(fb.landmarks - fa.landmarks, axis=1).mean() / inter_ocular(fa.landmarks)
           for fa, fb in zip(a.frames, b.frames, strict=True)]
    assert np.median(err) < 0.05, np.median(err)


def test_truncated_mp4_is_reported_for_audio_and_video(clips_dir: Path, tmp_path: Path) -> None:
    face = _frames(clips_dir.joinpath(*FACE_CLIP))
    frames = (face * 6)[: 12 * 25]  # 12 s of a real face
    whole = write_mp4(tmp_path / "whole.mp4", frames, seconds_of_tone=12.0, faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])  # the header (moov first) still declares 12 s
    assert open_media(cut).duration == pytest.approx(12.0, abs=0.1)

    cfg = ExtractConfig(text=[], audio=[ExtractorSpec(name="egemaps")], video=[ExtractorSpec(name="facet")])
    res = extract_item(_item(cut), cfg)
    assert res.vectors == {}  # nothing featurised from the surviving part
    reasons = {q["modality"]: q["reason"] for q in res.quarantine}
    assert set(reasons) == {"audio", "video"}
    assert "audio truncated" in reasons["audio"] or "audio decoding failed" in reasons["audio"], reasons
    assert "video truncated" in reasons["video"] or "video decoding failed" in reasons["video"], reasons

    # the intact file, through the same driver: both modalities present (the test can tell them apart)
    ok = extract_item(_item(whole), cfg)
    assert ok.present["audio"].all() and ok.present["video"].all(), ok.quarantine


def test_window_past_the_surviving_video_is_reported_not_cut_short(clips_dir: Path, tmp_path: Path) -> None:
    face = _frames(clips_dir.joinpath(*FACE_CLIP))
    whole = write_mp4(tmp_path / "whole.mp4", (face * 6)[: 12 * 25], faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.3)])
    with pytest.raises(Exception, match=r"video (truncated|decoding failed)"):
        track_faces(_item(cut, 1.0, 10.0), None, FaceTrackConfig())
