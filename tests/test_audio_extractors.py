"""openSMILE and COVAREP-compatible extractors on real clips (speech, silence, no audio, late audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from pydantic import ValidationError
from scipy.linalg import solve_toeplitz

from pipeline.errors import ItemError
from pipeline.extractors.base import MediaItem
from pipeline.extractors.covarep import CovarepConfig, _lpc, covarep_frames, mcep_matrix, perturbation
from pipeline.extractors.opensmile_sets import smile_for
from pipeline.extractors.registry import get_extractor, list_extractors
from pipeline.media import open_media


def _item(path: Path | None, bounds: list[tuple[float, float]] | None = None, item_id: str = "x") -> MediaItem:
    bounds = bounds or [(np.nan, np.nan)]
    seg = pd.DataFrame({
        "segment_id": [f"{item_id}_{i}" for i in range(len(bounds))], "segment_index": range(len(bounds)),
        "start": [b[0] for b in bounds], "end": [b[1] for b in bounds], "transcript": [""] * len(bounds),
    })
    return MediaItem(item_id, path, seg)


@pytest.fixture(scope="module")
def moud() -> tuple[MediaItem, object]:
    path = shared_path("moud", "101_movies.mp4")
    tr = pd.read_csv(shared_path("moud", "transcriptions", "101_movies.csv"), sep=";")
    item = _item(path, list(zip(tr["#starttime"], tr["#endtime"], strict=True)), "101_movies")
    return item, open_media(path)


@pytest.fixture(scope="module")
def lrs2(clips_dir: Path) -> tuple[MediaItem, object]:
    path = clips_dir / "lrs2_deep_avsr" / "00016.mp4"
    return _item(path, item_id="00016"), open_media(path)


def test_registry_and_configs() -> None:
    names = set(list_extractors())
    assert {"opensmile", "egemaps", "gemaps", "compare2016", "emobase", "is09", "covarep"} <= names
    assert get_extractor("egemaps").cfg.feature_set == "eGeMAPSv02"
    assert get_extractor("compare2016", level="lld_deltas").feature_name == "compare2016_lld_deltas"
    assert get_extractor("opensmile", feature_set="emobase").feature_name == "opensmile_emobase"
    with pytest.raises(ValidationError, match="no delta level"):
        get_extractor("egemaps", level="lld_deltas")
    with pytest.raises(ValidationError):
        get_extractor("opensmile", feature_set="NotASet")
    a, b = get_extractor("egemaps"), get_extractor("egemaps", level="lld")
    assert a.cfg.config_hash() != b.cfg.config_hash()


def test_egemaps_functionals_per_segment(moud) -> None:  # noqa: ANN001
    item, media = moud
    tf = get_extractor("egemaps").extract(item, media).features
    assert tf.values.shape == (5, 88)
    assert tf.dim_names == list(smile_for("eGeMAPSv02", "functionals").feature_names)
    assert tf.dim_names[0] == "F0semitoneFrom27.5Hz_sma3nz_amean"
    # one vector per utterance, bounds = the transcript's, the last clipped to the decoded audio
    assert np.allclose(tf.intervals[:4], item.segments[["start", "end"]].to_numpy()[:4])
    assert tf.intervals[-1, 1] == pytest.approx(media.audio_span[1])
    assert np.isfinite(tf.values).all()
    assert np.abs(np.diff(tf.values, axis=0)).sum(1).min() > 0  # utterances differ
    # the functionals are those of the utterance's own samples
    wave, sr = media.audio()
    s, e = item.segments.loc[2, ["start", "end"]]
    direct = smile_for("eGeMAPSv02", "functionals").process_signal(wave[round(s * sr): round(e * sr)], sr)
    assert np.allclose(tf.values[2], direct.to_numpy(np.float32)[0], rtol=1e-5, atol=1e-5)


def test_lld_levels(lrs2) -> None:  # noqa: ANN001
    item, media = lrs2
    tf = get_extractor("egemaps", level="lld").extract(item, media).features
    assert tf.values.shape[1] == 25 and tf.dim_names[0] == "Loudness_sma3"
    assert abs(len(tf.values) - 100 * media.duration) < 10  # 10 ms hop
    assert np.allclose(np.diff(tf.intervals[:, 0]), 0.01, atol=1e-6)
    deltas = get_extractor("compare2016", level="lld_deltas").extract(item, media).features
    assert deltas.values.shape[1] == 65 and deltas.dim_names[0].endswith("_de")


def test_compare_functionals_on_mpeg1_mp2(clips_dir: Path) -> None:
    path = clips_dir / "grid_lipnet" / "bbaf2n.mpg"
    tf = get_extractor("compare2016").extract(_item(path), open_media(path)).features
    assert tf.values.shape == (1, 6373) and np.isfinite(tf.values).all()


def test_audio_reasons_no_stream_silent_transcript_only(clips_dir: Path) -> None:
    ex = get_extractor("egemaps")
    mead = clips_dir / "mead_dreamtalk" / "W011_front_sad_level3_001.mp4"
    with pytest.raises(ItemError, match="no audio stream"):
        ex.extract(_item(mead), open_media(mead))
    silent = clips_dir / "pyfeat" / "WolfgangLanger_Pexels.mp4"
    with pytest.raises(ItemError, match="silent audio track"):
        get_extractor("covarep").extract(_item(silent), None)  # decodes the file itself when no media given
    with pytest.raises(ItemError, match="transcript-only"):
        ex.extract(_item(None), None)


def test_segments_without_audio_are_missing_with_a_note(clips_dir: Path) -> None:
    # face_noface.mov: the audio stream starts 2.43 s into the video
    path = clips_dir / "pyfeat" / "face_noface.mov"
    item = _item(path, [(0.0, 2.0), (3.0, 5.0), (5.0, 5.05)], "fnf")
    ex = get_extractor("egemaps")
    out = ex.extract(item, open_media(path))
    tf = out.features
    assert tf.values.shape == (1, 88) and np.allclose(tf.intervals, [[3.0, 5.0]])
    assert set(out.notes) == {"fnf_0", "fnf_2"} and "audio spans 2.43" in out.notes["fnf_0"]
    cov = get_extractor("covarep")
    seq = cov.extract(item, open_media(path)).features
    assert seq.intervals[:, 0].min() >= 3.0 - 1e-9 and seq.intervals[:, 1].max() <= 5.05 + 1e-9
    with pytest.raises(ItemError, match="no segment has"):
        ex.extract(_item(path, [(0.0, 2.0)]), open_media(path))


def test_covarep_on_speech_is_plausible(lrs2, clips_dir: Path) -> None:  # noqa: ANN001
    item, media = lrs2
    tf = get_extractor("covarep").extract(item, media).features
    names = tf.dim_names
    assert names[:7] == ["F0", "VUV", "NAQ", "QOQ", "H1H2", "MDQ", "peakSlope"]  # COVAREP's order, no PSP
    assert names[7:32] == [f"MCEP_{i}" for i in range(25)]
    assert names[32:57] == [f"HMPDM_{i}" for i in range(25)] and names[57:70] == [f"HMPDD_{i}" for i in range(13)]
    assert names[70:] == ["HNR", "jitter_local", "shimmer_local", "spectral_slope", "spectral_tilt"]
    assert len(names) == tf.values.shape[1] == 75
    assert np.allclose(np.diff(tf.intervals[:, 0]), 0.01, atol=1e-6)  # COVAREP's 100 Hz
    df = pd.DataFrame(tf.values, columns=names)
    voiced = df["VUV"] > 0
    assert np.isfinite(tf.values).all()
    assert 0.2 < voiced.mean() < 0.8  # running speech
    assert (df.loc[~voiced, ["F0", "NAQ", "QOQ", "H1H2"]] == 0).all().all()  # COVAREP's unvoiced convention
    f0 = df.loc[voiced, "F0"].median()
    assert 80 < f0 < 250  # adult male BBC speaker
    # independent tracker: openSMILE's ComParE F0 (Hz) agrees on the median within 15 %
    ref = get_extractor("compare2016", level="lld").extract(item, media).features
    f0_ref = ref.values[:, ref.dim_names.index("F0final_sma")]
    assert abs(f0 / np.median(f0_ref[f0_ref > 0]) - 1) < 0.15
    v = df[voiced]
    assert 0.05 < v["NAQ"].median() < 0.4 and 0.2 < v["QOQ"].median() < 0.8
    assert 0 < v["HNR"].median() < 25 and 0 < v["jitter_local"].median() < 0.1
    assert 0.03 < v["MDQ"].median() < 0.3
    assert df["spectral_slope"].median() < 0 and df["MCEP_0"].std() > 0.5
    # phase distortion deviation: harmonics are regular low, noise-like high (Degottex & Erro 2014)
    pdd = v[[f"HMPDD_{i}" for i in range(13)]].median().to_numpy()
    assert pdd[:3].mean() < 0.6 and pdd[-4:].mean() > 0.9


def test_covarep_on_silence_has_no_voicing(clips_dir: Path) -> None:
    media = open_media(clips_dir / "pyfeat" / "WolfgangLanger_Pexels.mp4")
    wave, sr = media.audio(allow_silent=True)
    times, v = covarep_frames(wave[: 3 * sr], sr, CovarepConfig())
    assert len(times) == 300 and np.isfinite(v).all()
    assert (v[:, 1] == 0).all() and (v[:, :6] == 0).all()  # F0, VUV, NAQ, QOQ, H1H2, MDQ


def test_mcep_matrix_without_warping_is_the_real_cepstrum() -> None:
    rng = np.random.default_rng(0)
    n_fft = 512
    logamp = np.log(np.abs(np.fft.rfft(rng.standard_normal(n_fft) * np.hanning(n_fft))) + 1e-3)
    ceps = np.fft.irfft(logamp)  # log|X| = c0 + 2 sum c_m cos(m w)
    ours = mcep_matrix(n_fft // 2 + 1, 24, 0.0) @ logamp
    assert np.allclose(ours[0], ceps[0], atol=2e-3) and np.allclose(ours[1:], 2 * ceps[1:25], atol=2e-3)
    warped = mcep_matrix(n_fft // 2 + 1, 24, 0.42) @ logamp
    assert not np.allclose(warped, ours)


def test_lpc_matches_toeplitz_solve() -> None:
    rng = np.random.default_rng(1)
    frames = np.cumsum(rng.standard_normal((3, 400)), axis=1) * np.hanning(400)
    a = _lpc(frames, 8)
    for f, row in zip(frames, a, strict=True):
        r = np.correlate(f, f, "full")[399:408]
        assert np.allclose(row[1:], -solve_toeplitz(r[:8], r[1:9]), atol=1e-6)


def test_jitter_and_shimmer_on_known_pulse_trains() -> None:
    sr, cfg = 16000, CovarepConfig()
    t0 = 0.008
    periods = np.where(np.arange(200) % 2 == 0, t0 * 1.05, t0 * 0.95)  # +-5 % alternation
    pulse_t = 0.05 + np.concatenate([[0.0], np.cumsum(periods)])
    x = np.zeros(int((pulse_t[-1] + 0.05) * sr))
    amps = np.where(np.arange(len(pulse_t)) % 2 == 0, 1.0, 0.8)
    for p, a in zip(pulse_t, amps, strict=True):
        i = int(round(p * sr))
        x[i], x[i + 20] = a, -a
    times = np.array([0.5, 1.0])
    jit, shim = perturbation(x, sr, times, pulse_t, cfg)
    assert np.allclose(jit, 0.1, atol=0.005)  # |dT| = 0.1 T
    assert np.allclose(shim, 0.2 / 0.9, atol=0.01)
    steady, _ = perturbation(x, sr, times, 0.05 + np.arange(200) * t0, cfg)
    assert np.allclose(steady, 0, atol=1e-9)


def test_peak_slope_orders_spectral_tilts() -> None:
    # white noise has more energy in the wider high octaves than integrated (brown) noise
    from pipeline.extractors.covarep import peak_slope

    sr, rng = 16000, np.random.default_rng(0)
    white = rng.standard_normal(sr)
    brown = np.cumsum(white)
    brown = (brown - np.convolve(brown, np.ones(401) / 401, "same")) / 50  # drop the DC drift
    centers = np.arange(20, 80) * 160
    ps_white, ps_brown = (peak_slope(x, sr, centers, CovarepConfig()).mean() for x in (white, brown))
    assert ps_white > 0.1 and ps_brown < -0.05
    assert 0.2 < ps_white - ps_brown < 0.4  # brown noise is 6 dB (0.3 in log10 amplitude) per octave down


def test_covarep_chunks_keep_the_frame_grid(moud) -> None:  # noqa: ANN001
    item, media = moud
    whole = get_extractor("covarep", glottal=False).extract(item, media).features
    chunked = get_extractor("covarep", glottal=False, chunk_frames=500).extract(item, media).features
    assert np.allclose(whole.intervals, chunked.intervals)
    # Praat's voicing depends on the stretch it analyses (its Viterbi path; the silence threshold is
    # rescaled to the whole stretch's peak), so chunking changes a few decisions, not the picture
    assert (whole.values[:, 1] == chunked.values[:, 1]).mean() > 0.95
    assert "NAQ" not in whole.dim_names  # switched off: no column, rather than zeros
    mcep = [whole.dim_names.index(f"MCEP_{i}") for i in range(25)]
    assert np.allclose(whole.values[:, mcep], chunked.values[:, mcep], atol=1e-4)


def _rosenberg_vowel(oq: float, f0: float = 120.0, sr: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """A vowel with a known glottal source: Rosenberg pulses (open quotient ``oq``, speed quotient 2)
    through four formant resonators (700/1220/2600/3300 Hz) and lip radiation (first difference)."""
    from scipy.signal import lfilter

    period = 1.0 / f0
    phase = (np.arange(int(seconds * sr)) / sr) % period
    tn = oq * period / 3.0
    tp = oq * period - tn
    flow = np.where(phase <= tp, 0.5 * (1 - np.cos(np.pi * phase / tp)),
                    np.where(phase <= tp + tn, np.cos(np.pi * (phase - tp) / (2 * tn)), 0.0))
    a = np.array([1.0])
    for f, bw in [(700, 80), (1220, 90), (2600, 120), (3300, 150)]:
        r = np.exp(-np.pi * bw / sr)
        a = np.convolve(a, [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r])
    speech = np.diff(lfilter([1.0], a, flow), prepend=0.0)
    return (0.3 * speech / np.abs(speech).max()).astype(np.float32)


def test_glottal_measures_recover_a_known_source() -> None:
    # Rosenberg pulse: NAQ = 2*Tn / (pi*T) and QOQ = (Tp/2 + 2*Tn/3) / T, Tn = OQ*T/3, Tp = 2*Tn
    sr, got = 16000, []
    for oq in (0.4, 0.6, 0.8):
        _, v = covarep_frames(_rosenberg_vowel(oq), sr, CovarepConfig())
        voiced = v[:, 1] > 0
        assert voiced.mean() > 0.9
        f0, naq, qoq, h1h2 = np.median(v[voiced, 0]), *np.median(v[voiced, 2:5], axis=0)
        assert f0 == pytest.approx(120.0, abs=1.0)
        assert naq == pytest.approx(2 * (oq / 3) / np.pi, rel=0.25)
        assert qoq == pytest.approx(oq * (1 / 3 + 2 / 9), rel=0.25)
        got.append((naq, qoq, h1h2))
    naqs, qoqs, h1h2s = zip(*got, strict=True)
    # a more open (breathier) glottis: larger NAQ, QOQ and H1-H2
    assert list(naqs) == sorted(naqs) and list(qoqs) == sorted(qoqs) and list(h1h2s) == sorted(h1h2s)


def test_phase_distortion_deviation_measures_noise() -> None:
    cfg, rng = CovarepConfig(), np.random.default_rng(0)
    clean = _rosenberg_vowel(0.6)
    noisy = clean + 0.03 * rng.standard_normal(len(clean)).astype(np.float32)
    pdd = []
    for x in (clean, noisy):
        _, v = covarep_frames(x, 16000, cfg)
        voiced = v[:, 1] > 0
        pdd.append(np.median(v[voiced, 57:70], axis=0))  # HMPDD_0..12
    assert pdd[0].max() < 0.05  # a strictly periodic source: no phase distortion deviation
    assert pdd[1][-4:].min() > 1.0 and pdd[1][:4].max() < 0.3  # noise takes the weak high harmonics first


def test_mdq_rises_with_aspiration_noise() -> None:
    # Kane & Gobl 2013: wavelet maxima of the LP residual disperse around the GCI in breathy voice
    cfg, rng = CovarepConfig(), np.random.default_rng(0)
    mdq = {}
    for oq in (0.4, 0.8):
        clean = _rosenberg_vowel(oq)
        for noise in (0.0, 0.02):
            x = clean + noise * rng.standard_normal(len(clean)).astype(np.float32)
            _, v = covarep_frames(x, 16000, cfg)
            mdq[oq, noise] = float(np.median(v[v[:, 1] > 0, 5]))
    assert mdq[0.4, 0.02] > mdq[0.4, 0.0] and mdq[0.8, 0.02] > mdq[0.8, 0.0]
    assert mdq[0.8, 0.02] > 1.5 * mdq[0.4, 0.0]  # breathy (open, noisy) vs tense (closed, clean)


def test_smile_is_built_without_scanning_every_installed_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """audobject learns a class's distribution by scanning all installed metadata (1.5 s of CPU per
    process); the extractor gives it the one answer it needs, and the recorded class key is unchanged."""
    import threading

    from audobject.core import utils

    from pipeline.extractors.opensmile_sets import smile_for

    def scan() -> dict:
        raise AssertionError("packages_distributions() was called")

    monkeypatch.setattr(utils, "PACKAGES_DISTRIBUTIONS", {})
    monkeypatch.setattr(utils, "packages_distributions", scan)
    built: list = []
    t = threading.Thread(target=lambda: built.append(smile_for("eGeMAPSv02", "functionals")))  # fresh cache
    t.start()
    t.join()
    assert built and built[0].to_yaml_s().startswith("$opensmile.core.smile.Smile==")
