"""Alignment against CMU-MultimodalSDK's own ``align`` (mmsdk 0.0.6) on real data: GRID word timings
and MOSI's official segment intervals, with real GloVe vectors as the aligned features."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from mmsdk import mmdatasdk as md

from pipeline.align import align_to_segments, clip_to_segments, fallback_word_times
from pipeline.corpus import read_align
from pipeline.extractors.base import TimedFeatures
from pipeline.extractors.glove import load_glove
from pipeline.extractors.text_pooled import tokenize


def _mmsdk_align(ref: dict[str, np.ndarray], other: dict[str, TimedFeatures], collapse) -> dict[str, np.ndarray]:
    """mmsdk's mmdataset.align on in-memory sequences (no files, no deploy(), no input())."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        r, o = md.computational_sequence("ref"), md.computational_sequence("other")
        for vid, iv in ref.items():
            r[vid] = {"intervals": iv, "features": np.zeros((len(iv), 1))}
        for vid, tf in other.items():
            o[vid] = {"intervals": tf.intervals, "features": tf.values.astype(np.float64)}
        ds = md.mmdataset.__new__(md.mmdataset)
        ds.computational_sequences = {"ref": r, "other": o}
        ds.align("ref", collapse_functions=[collapse])
    return {k: v["features"] for k, v in ds.computational_sequences["other"].data.items()}


def _sdk_mean(intervals, features):
    return np.mean(features, axis=0)


def _words(tokens: list[str], times: np.ndarray, glove) -> TimedFeatures:
    vals, kept = glove.lookup(tokens, "skip")
    return TimedFeatures(times[kept], vals)


@pytest.fixture(scope="module")
def glove(glove_txt):
    return load_glove(str(glove_txt))


def test_grid_word_timings_match_mmsdk(clips_dir, glove):
    words = read_align(clips_dir / "grid_lipnet" / "swwp2s.align")
    assert words["word"].tolist() == ["set", "white", "with", "p", "two", "soon"]
    tf = _words(words["word"].tolist(), words[["start", "end"]].to_numpy(), glove)
    # windows that cut words in the middle, touch boundaries, a zero-length one, one beyond the end
    ref = np.array([[0.0, 0.5], [0.5, 1.0], [1.0, 1.5], [1.5, 3.0], [0.78, 0.78], [2.5, 3.0], [0.49, 1.11], [0.0, 3.0]])
    ours = align_to_segments(tf, ref, "mean")
    theirs = _mmsdk_align({"v": ref}, {"v": tf}, _sdk_mean)
    for i in range(len(ref)):
        key = f"v[{i}]"
        assert ours.present[i] == (key in theirs), i
        if key in theirs:
            np.testing.assert_allclose(ours.values[i], theirs[key].reshape(-1), rtol=1e-5, atol=1e-6)
    assert not ours.present[4] and not ours.present[5]  # zero-length ref; only silence after 2.21 s
    assert ours.present.sum() == 6


def test_mosi_segments_match_mmsdk(mosi_dir, glove):
    """Reference = the official MOSI segment intervals (.csd); aligned = word vectors of the transcripts."""
    import pandas as pd

    from pipeline.importers.csd import read_csd

    labels = read_csd(mosi_dir / "CMU_MOSI_Opinion_Labels.csd")
    seg = pd.read_csv(mosi_dir / "segments.csv")
    videos = sorted(set(seg["video_id"]) & set(labels.data))[:6]
    ref, other = {}, {}
    for v in videos:
        ref[v] = np.asarray(labels.data[v]["intervals"], np.float64)
        toks, times = [], []
        for r in seg[seg.video_id == v].itertuples():
            t = tokenize(r.transcript)
            toks += t
            times.append(fallback_word_times(t, r.start, r.end))
        other[v] = _words(toks, np.concatenate(times), glove)
    for fn_name, fn in [("mean", _sdk_mean), ("max", lambda i, f: np.max(f, axis=0))]:
        theirs = _mmsdk_align(ref, other, fn)
        n_present = 0
        for v in videos:
            ours = align_to_segments(other[v], ref[v], fn_name)
            for i in range(len(ref[v])):
                key = f"{v}[{i}]"
                assert ours.present[i] == (key in theirs), (v, i)
                if key in theirs:
                    n_present += 1
                    np.testing.assert_allclose(ours.values[i], theirs[key].reshape(-1), rtol=1e-5, atol=1e-6)
        assert n_present > 50


def test_callable_collapse_gets_clipped_pieces_like_mmsdk(clips_dir, glove):
    words = read_align(clips_dir / "grid_lipnet" / "swwp2s.align")
    tf = _words(words["word"].tolist(), words[["start", "end"]].to_numpy(), glove)
    ref = np.array([[0.3, 1.2], [1.2, 2.0]])

    def duration_weighted(intervals, features):
        w = intervals[:, 1] - intervals[:, 0]
        return (features * w[:, None]).sum(0) / w.sum()

    theirs = _mmsdk_align({"v": ref}, {"v": tf}, duration_weighted)
    ours = align_to_segments(tf, ref, duration_weighted)
    fast = align_to_segments(tf, ref, "weighted_mean")
    for i in range(2):
        np.testing.assert_allclose(ours.values[i], theirs[f"v[{i}]"].reshape(-1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fast.values[i], ours.values[i], rtol=1e-5, atol=1e-6)
    pieces = clip_to_segments(tf, ref)
    assert pieces[0].intervals[0, 0] == pytest.approx(0.49) and pieces[0].intervals[-1, 1] == pytest.approx(1.2)


def test_missing_is_nan_never_zero():
    tf = TimedFeatures(np.array([[0.0, 1.0]]), np.ones((1, 3)))
    al = align_to_segments(tf, np.array([[0.0, 1.0], [5.0, 6.0]]))
    assert al.present.tolist() == [True, False] and np.isnan(al.values[1]).all()


def test_fallback_word_times_cover_segment_in_length_proportion():
    t = fallback_word_times(["a", "bbb", "cc"], 10.0, 19.0)
    assert t[0, 0] == 10.0 and t[-1, 1] == pytest.approx(19.0)
    np.testing.assert_allclose(t[1:, 0], t[:-1, 1])
    np.testing.assert_allclose(np.diff(t, axis=1).ravel(), [2.0, 4.0, 3.0])


def test_blocked_overlap_matches_unblocked(monkeypatch):
    import pipeline.align as A

    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 100, 500))
    tf = TimedFeatures(np.stack([starts, starts + rng.uniform(0.01, 2, 500)], 1), rng.normal(size=(500, 4)))
    ref = np.sort(rng.uniform(0, 100, (40, 2)), axis=1)
    full = align_to_segments(tf, ref, "std")
    monkeypatch.setattr(A, "_BLOCK_CELLS", 600)  # force ~1 reference row per block
    blocked = align_to_segments(tf, ref, "std")
    np.testing.assert_array_equal(full.present, blocked.present)
    np.testing.assert_allclose(full.values[full.present], blocked.values[blocked.present], rtol=1e-6)


def test_word_level_alignment_of_real_audio_frames_matches_mmsdk(clips_dir):
    """Word-level: 10 ms frames of the real GRID waveform (log energy, zero-crossings) onto its .align words."""
    from pipeline.media import open_media

    words = read_align(clips_dir / "grid_lipnet" / "swwp2s.align")
    wave, sr = open_media(clips_dir / "grid_lipnet" / "id2_vcd_swwp2s.mpg").audio()
    hop = sr // 100
    n = len(wave) // hop
    frames = wave[: n * hop].reshape(n, hop).astype(np.float64)
    feats = np.stack([np.log(np.mean(frames**2, 1) + 1e-10), np.mean(np.abs(np.diff(np.sign(frames), axis=1)), 1)], 1)
    t = np.arange(n) / 100.0
    tf = TimedFeatures(np.stack([t, t + 0.01], 1), feats)
    ref = words[["start", "end"]].to_numpy()
    theirs = _mmsdk_align({"v": ref}, {"v": tf}, _sdk_mean)
    ours = align_to_segments(tf, ref, "mean")
    assert ours.present.all() and len(theirs) == len(ref)
    for i in range(len(ref)):
        np.testing.assert_allclose(ours.values[i], theirs[f"v[{i}]"].reshape(-1), rtol=1e-5, atol=1e-5)
    # speech is louder than the surrounding silence: the words' energy beats the clip's first 0.4 s
    assert ours.values[:, 0].mean() > feats[:40, 0].mean() + 1.0
