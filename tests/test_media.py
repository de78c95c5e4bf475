"""Decoding on the real shared clips: every clip decodes or fails with its precise reason."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from pipeline.errors import ItemError
from pipeline.media import MediaConfig, level_dbfs, open_media, probe


@pytest.fixture(scope="module")
def manifest(clips_dir: Path) -> pd.DataFrame:
    return pd.read_csv(clips_dir / "manifest.csv")


def test_probe_matches_manifest_for_every_clip(clips_dir: Path, manifest: pd.DataFrame) -> None:
    for row in manifest.itertuples():
        info = probe(clips_dir / row.path)
        assert info.has_video
        assert info.video.codec == row.vcodec, row.path
        assert (info.video.width, info.video.height) == (row.width, row.height)
        assert info.video.fps == pytest.approx(row.fps, abs=0.01)
        assert info.duration == pytest.approx(row.duration_s, abs=0.1), row.path
        has_audio = isinstance(row.acodec, str)
        assert info.has_audio == has_audio, row.path
        if has_audio:
            # ffmpeg names its float mp3 decoder "mp3float"
            assert info.audio.codec.startswith(row.acodec), (info.audio.codec, row.acodec)
            assert info.audio.sample_rate == row.sample_rate


def test_audio_of_every_clip_decodes_or_gives_reason(clips_dir: Path, manifest: pd.DataFrame) -> None:
    reasons: dict[str, str] = {}
    for row in manifest.itertuples():
        m = open_media(clips_dir / row.path, item=row.path)
        try:
            wave, sr = m.audio()
        except ItemError as e:
            reasons[row.path] = str(e)
            continue
        assert sr == 16000 and wave.dtype == np.float32 and wave.ndim == 1
        start, end = m.audio_span
        assert end - start == pytest.approx(row.duration_s, abs=0.1) or row.path.endswith(".mov")
        assert m.audio()[0] is wave  # decoded once, cached
    no_stream = {r.path for r in manifest.itertuples() if not isinstance(r.acodec, str)}
    silent = {r.path for r in manifest.itertuples() if isinstance(r.acodec, str) and r.audio_mean_db < -60}
    assert len(no_stream) == 24 and silent == {"pyfeat/WolfgangLanger_Pexels.mp4"}
    assert set(reasons) == no_stream | silent
    for p in no_stream:
        assert "no audio stream" in reasons[p] and "[decode/audio]" in reasons[p]
    assert "silent audio track" in reasons["pyfeat/WolfgangLanger_Pexels.mp4"]
    assert "dBFS" in reasons["pyfeat/WolfgangLanger_Pexels.mp4"]


def test_quiet_but_audible_track_is_not_silent(clips_dir: Path) -> None:
    # single_face.mp4 is quiet (about -57 dBFS) but holds sound: it decodes; a stricter threshold refuses it
    m = open_media(clips_dir / "pyfeat/single_face.mp4")
    wave, _ = m.audio()
    rms, peak, active = m.audio_level
    assert -62 < rms < -50 and peak > rms and active > -60
    strict = open_media(clips_dir / "pyfeat/single_face.mp4", silence_dbfs=-40)
    with pytest.raises(ItemError, match="silent audio track"):
        strict.audio()
    assert strict.audio(allow_silent=True)[0].size == wave.size


def test_grid_mpeg1_mp2_decodes_audio_and_frames(clips_dir: Path) -> None:
    m = open_media(clips_dir / "grid_lipnet/bbaf2n.mpg")
    assert m.info.video.codec == "mpeg1video" and m.info.audio.codec == "mp2"
    wave, sr = m.audio()
    assert abs(wave.size / sr - 2.98) < 0.05
    frames = list(m.frames())
    assert len(frames) == 75
    t, img = frames[10]
    assert img.shape == (288, 360, 3) and img.dtype == np.uint8 and t == pytest.approx(0.4)


def test_frames_sampled_downscaled_and_windowed(clips_dir: Path) -> None:
    m = open_media(clips_dir / "lrs2_deep_avsr/00001.mp4", fps=5, max_side=80)
    frames = list(m.frames())
    times = np.array([t for t, _ in frames])
    assert len(frames) == 24  # 4.8 s at 5 fps
    assert np.allclose(np.diff(times), 0.2, atol=0.041)
    assert frames[0][1].shape == (80, 80, 3)
    gray = next(iter(m.frames(fmt="gray", max_side=40)))[1]
    assert gray.shape == (40, 40) and gray.dtype == np.uint8
    # the image is a real face crop, not a blank frame
    assert frames[5][1].std() > 10
    moud = shared_path("moud", "101_movies.mp4")
    win = [t for t, _ in open_media(moud, fps=10).frames(start=12.0, end=14.0)]
    assert win[0] == pytest.approx(12.0, abs=0.05) and win[-1] <= 14.0 + 1e-6
    assert 19 <= len(win) <= 21


def test_hevc_mov_with_late_audio_stream(clips_dir: Path) -> None:
    m = open_media(clips_dir / "pyfeat/face_noface.mov", fps=2, max_side=320)
    wave, sr = m.audio()
    start, end = m.audio_span
    assert start == pytest.approx(107164 / 44100, abs=1e-3)  # the stream's own start time
    assert not wave[: int(start * sr)].any() and np.abs(wave[int(start * sr):]).max() > 0.1
    frames = list(m.frames())
    assert frames[0][1].shape == (180, 320, 3) and len(frames) == 13


def test_missing_empty_and_junk_files(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match="file not found"):
        open_media(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ItemError, match=r"empty file \(0 bytes\)"):
        open_media(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(ItemError, match="corrupt or unsupported container"):
        open_media(tmp_path / "junk.mp4")


def test_truncated_copies(tmp_path: Path, clips_dir: Path) -> None:
    # moov atom at the end: half a file has no index, the container does not open
    data = (clips_dir / "lrs2_deep_avsr/00016.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(ItemError, match="corrupt or unsupported container"):
        open_media(tmp_path / "half.mp4")
    # a few bytes of an MPEG-PS file: one partial frame
    grid = (clips_dir / "grid_lipnet/bbaf2n.mpg").read_bytes()
    (tmp_path / "tiny.mpg").write_bytes(grid[:100])
    with pytest.raises(ItemError, match="zero duration"):
        open_media(tmp_path / "tiny.mpg")


def test_truncated_faststart_mp4(tmp_path: Path, clips_dir: Path) -> None:
    # index first (faststart), data cut in half: it opens, then each stream reports the truncation
    import av

    full = tmp_path / "fast.mp4"
    with av.open(str(clips_dir / "lrs2_deep_avsr/00016.mp4")) as src, \
            av.open(str(full), "w", options={"movflags": "faststart"}) as dst:
        out = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for pkt in src.demux():
            if pkt.dts is not None:
                pkt.stream = out[pkt.stream.index]
                dst.mux(pkt)
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    m = open_media(tmp_path / "cut.mp4")
    assert m.duration == pytest.approx(11.32, abs=0.05)  # the header still claims the full length
    with pytest.raises(ItemError, match=r"\[decode/audio\].*(truncated|decoding failed)"):
        m.audio()
    with pytest.raises(ItemError, match=r"\[decode/video\].*(truncated|decoding failed)"):
        for _ in m.frames(fps=5):
            pass
    intact = open_media(full)
    assert intact.audio()[0].size > 11 * 16000


def test_audio_memory_limit(clips_dir: Path) -> None:
    with pytest.raises(ItemError, match="audio too long"):
        open_media(clips_dir / "lrs2_deep_avsr/00016.mp4", max_audio_s=5).audio()


def test_level_dbfs_on_known_signals() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rms, peak, active = level_dbfs(sine, sr)
    assert rms == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)
    assert peak == pytest.approx(20 * math.log10(0.5), abs=0.05)
    assert level_dbfs(np.zeros(sr, np.float32), sr)[2] <= -199
    assert MediaConfig().config_hash() == MediaConfig(sample_rate=16000).config_hash()


def test_window_on_mpeg_ps_starts_at_the_window(clips_dir: Path) -> None:
    # MPEG-PS seeks land past the requested time; frames() then decodes from the start instead
    m = open_media(clips_dir / "grid_lipnet/bbaf2n.mpg", fps=5)
    times = [t for t, _ in m.frames(start=1.0, end=2.0)]
    assert times[0] == pytest.approx(1.0) and times[-1] == pytest.approx(2.0) and len(times) == 6


def test_open_media_passes_every_decoding_option_through(clips_dir: Path) -> None:
    path = clips_dir / "pyfeat" / "single_face.mp4"  # 640x360: downscaled, so the filter matters
    fast = open_media(path, max_side=160)
    area = open_media(path, max_side=160, interpolation="AREA")
    assert area.cfg.interpolation == "AREA" and fast.cfg.interpolation == "FAST_BILINEAR"
    a = next(iter(area.frames(fmt="gray")))[1]
    f = next(iter(fast.frames(fmt="gray")))[1]
    assert a.shape == f.shape == (90, 160) and not np.array_equal(a, f)
    with pytest.raises(ValueError):
        open_media(path, interpolation="NEAREST_NEIGHBOUR_PLEASE")


def test_segment_bounds_is_the_one_nan_means_whole_file_rule() -> None:
    from pipeline.media import segment_bounds

    seg = pd.DataFrame({"segment_id": ["a", "b", "c"], "start": [np.nan, 1.0, np.nan], "end": [2.0, np.nan, np.nan]})
    assert segment_bounds(seg, (0.0, 9.5)).tolist() == [[0.0, 2.0], [1.0, 9.5], [0.0, 9.5]]
    assert segment_bounds(None, (0.5, 3.0)).tolist() == [[0.5, 3.0]]
    assert segment_bounds(seg.drop(columns=["end"]), (0.0, 1.0)).tolist() == [[0.0, 1.0]]


def test_extract_config_declares_decoding_once_through_media_config() -> None:
    from pydantic import ValidationError

    from pipeline.extract import ExtractConfig

    cfg = ExtractConfig(text=[], audio=[], video=[])
    assert {k: getattr(cfg, k) for k in MediaConfig.model_fields} == MediaConfig().model_dump()
    with pytest.raises(ValidationError, match="fps"):
        ExtractConfig(text=[], audio=[], video=[], fps=-5)  # refused when the config loads, not on an item
