"""Decoding with PyAV (it carries its own ffmpeg): probe a file, then decode audio once and frames lazily.

Time zero is the container's start time, for audio and frames alike, so the two stay aligned even when a
stream starts late (``pyfeat/face_noface.mov``'s audio begins 2.43 s in). The waveform is indexed from
time zero: samples before the audio stream starts are zero-padded, and ``audio_span`` says where the real
audio is, so extractors can refuse to report features for the padding.

Every failure is an :class:`ItemError` (stage ``decode``) naming what is wrong: missing file, a container
ffmpeg cannot read, no audio / no video stream, a silent track (level in dBFS against a configurable
threshold), zero duration, a stream that stops well before its declared duration (truncated file).

Speed: frames not kept by the sampling rate are decoded (the codec needs them) but never converted to
RGB; kept frames are converted and downscaled in one swscale call. Memory: frames are streamed, only the
mono float32 waveform (64 kB per second at 16 kHz) is cached.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.errors import ItemError
from pipeline.provenance import StageConfig

# A decoded stream shorter than this fraction of its declared duration is reported as truncated.
_TRUNCATION_RATIO = 0.9
# Window of the short-term level used for the silence test (seconds).
_LEVEL_WINDOW_S = 0.05


class MediaConfig(StageConfig):
    """How media are decoded; saved with every feature set that used it."""

    sample_rate: int = Field(16000, ge=4000, le=96000, description="audio is resampled once to this rate, mono")
    fps: float | None = Field(None, gt=0, le=120, description="frames sampled per second; None = every frame")
    max_side: int | None = Field(None, ge=16, le=8192, description="frames downscaled to this longest side")
    silence_dbfs: float = Field(
        -60.0, le=0, description="a track whose active level (95th percentile of 50 ms RMS) is below this is silent"
    )
    min_duration_s: float = Field(0.1, ge=0, description="shorter media are refused as zero-length")
    max_audio_s: float = Field(
        4 * 3600.0, gt=0, description="longer audio is refused: the waveform is held in memory (64 kB/s at 16 kHz)"
    )
    interpolation: Literal["FAST_BILINEAR", "BILINEAR", "AREA", "BICUBIC"] = Field(
        "FAST_BILINEAR", description="swscale filter for downscaling (FAST_BILINEAR: 2-4x cheaper than AREA)"
    )


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float | None


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    start: float  # seconds after the container start
    duration: float | None


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format: str
    duration: float
    size_bytes: int
    video: VideoInfo | None = None
    audio: AudioInfo | None = None
    other_streams: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def has_video(self) -> bool:
        return self.video is not None


def _err(msg: str, item: str, modality: str | None = None) -> ItemError:
    return ItemError(msg, item=item, stage="decode", modality=modality)


def _open_container(path: Path, item: str):  # noqa: ANN202 - av.container.InputContainer
    import av

    if not path.exists():
        raise _err(f"file not found: {path}", item)
    if not path.is_file():
        raise _err(f"not a regular file: {path}", item)
    if path.stat().st_size == 0:
        raise _err("empty file (0 bytes)", item)
    if not os.access(path, os.R_OK):
        raise _err("file not readable (permission denied)", item)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise _err(f"corrupt or unsupported container, ffmpeg cannot open it ({e.__class__.__name__}: {e})", item) from e


def _stream_duration(stream) -> float | None:  # noqa: ANN001
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _stream_start(stream, t0: float) -> float:  # noqa: ANN001
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base) - t0)


def _container_t0(container) -> float:  # noqa: ANN001
    return 0.0 if container.start_time is None else container.start_time / 1_000_000


def _info_from_container(container, path: Path) -> MediaInfo:  # noqa: ANN001
    t0 = _container_t0(container)
    video = audio = None
    others: list[str] = []
    for s in container.streams:
        if s.type == "video" and video is None:
            rate = s.average_rate or s.guessed_rate or s.base_rate
            video = VideoInfo(
                codec=s.codec_context.name, width=int(s.codec_context.width), height=int(s.codec_context.height),
                fps=float(rate) if rate else float("nan"), n_frames=int(s.frames) or None,
                duration=_stream_duration(s),
            )
        elif s.type == "audio" and audio is None:
            audio = AudioInfo(
                codec=s.codec_context.name, sample_rate=int(s.codec_context.sample_rate or 0),
                channels=int(s.codec_context.channels or 0), start=_stream_start(s, t0), duration=_stream_duration(s),
            )
        else:
            others.append(f"{s.type}:{s.codec_context.name if s.codec_context else '?'}")
    durations = [container.duration / 1_000_000 if container.duration else 0.0]
    if video is not None and video.duration:
        durations.append(video.duration)
    if audio is not None and audio.duration:
        durations.append(audio.start + audio.duration)
    return MediaInfo(
        path=str(path), format=container.format.name, duration=float(max(durations)),
        size_bytes=path.stat().st_size, video=video, audio=audio, other_streams=tuple(others),
    )


def probe(path: str | Path, *, item: str | None = None) -> MediaInfo:
    """Container, streams, codecs, fps, sample rate and duration, from headers only (nothing decoded)."""
    path = Path(path)
    item = item or path.name
    container = _open_container(path, item)
    with container:
        info = _info_from_container(container, path)
    if info.video is None and info.audio is None:
        raise _err(f"no audio or video stream (streams: {list(info.other_streams) or 'none'})", item)
    return info


def level_dbfs(wave: np.ndarray, sample_rate: int) -> tuple[float, float, float]:
    """(RMS, peak, active level) in dBFS; active = 95th percentile of the 50 ms RMS (ignores pauses)."""
    if wave.size == 0:
        return -np.inf, -np.inf, -np.inf
    floor = 1e-20  # -200 dBFS: digital silence gets a finite level, so comparisons stay meaningful
    rms = 10 * np.log10(max(floor, float(np.mean(np.square(wave, dtype=np.float64)))))
    peak = 10 * np.log10(max(floor, float(np.max(np.abs(wave))) ** 2))
    n = max(1, int(_LEVEL_WINDOW_S * sample_rate))
    k = max(1, wave.size // n)
    frames = wave[: k * n].reshape(k, -1) if wave.size >= n else wave.reshape(1, -1)
    short = 10 * np.log10(np.maximum(floor, np.mean(np.square(frames, dtype=np.float64), axis=1)))
    return float(rms), float(peak), float(np.percentile(short, 95))


class MediaFile:
    """One decoded media file (the ``MediaSource`` of ``pipeline/extractors/base.py``).

    Audio is decoded and resampled once, on first use, then cached; frames are decoded on each call to
    ``frames()`` as a stream (never cached: a video does not fit in memory, its waveform does).
    """

    def __init__(self, path: str | Path, cfg: MediaConfig | None = None, *, item: str | None = None) -> None:
        self.path = Path(path)
        self.cfg = cfg or MediaConfig()
        self.item = item or self.path.name
        self.info = probe(self.path, item=self.item)
        if self.info.duration < self.cfg.min_duration_s:
            raise _err(f"zero duration ({self.info.duration:.3f} s < {self.cfg.min_duration_s} s)", self.item)
        self._audio: np.ndarray | None = None
        self._audio_span: tuple[float, float] | None = None
        self.rotation = 0  # display-matrix rotation in degrees, counter-clockwise (read from decoded frames)
        self.audio_level: tuple[float, float, float] | None = None  # rms, peak, active (dBFS)

    # ----------------------------------------------------------------------------------- properties
    @property
    def duration(self) -> float:
        return self.info.duration

    @property
    def has_audio(self) -> bool:
        return self.info.has_audio

    @property
    def has_video(self) -> bool:
        return self.info.has_video

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def audio_span(self) -> tuple[float, float]:
        """[start, end) seconds where the waveform holds decoded audio (the rest is padding)."""
        self._decode_audio()
        assert self._audio_span is not None
        return self._audio_span

    # ---------------------------------------------------------------------------------------- audio
    def audio(self, *, allow_silent: bool = False) -> tuple[np.ndarray, int]:
        """Mono float32 waveform at ``cfg.sample_rate``, sample 0 = container start; decoded once.

        Raises ``ItemError`` for no audio stream, undecodable or truncated audio, and (unless
        ``allow_silent``) a silent track.
        """
        wave = self._decode_audio()
        if not allow_silent:
            rms, peak, active = self.audio_level  # type: ignore[misc]
            if active < self.cfg.silence_dbfs:
                raise _err(
                    f"silent audio track (active level {active:.1f} dBFS, RMS {rms:.1f}, peak {peak:.1f}; "
                    f"threshold {self.cfg.silence_dbfs:.0f} dBFS)", self.item, "audio",
                )
        return wave, self.cfg.sample_rate

    def _decode_audio(self) -> np.ndarray:
        if self._audio is not None:
            return self._audio
        import av

        ainfo = self.info.audio
        if ainfo is None:
            raise _err("no audio stream in the file", self.item, "audio")
        sr, limit = self.cfg.sample_rate, self.cfg.max_audio_s
        if ainfo.duration and ainfo.start + ainfo.duration > limit:
            raise _err(f"audio too long to decode in memory ({ainfo.start + ainfo.duration:.0f} s > "
                       f"max_audio_s {limit:.0f} s)", self.item, "audio")
        # One buffer sized from the declared duration, sample 0 = container start (the padding before a
        # late stream stays zero): no list of chunks, no concatenation copy; grown only if the header lied.
        pad = int(round(ainfo.start * sr))
        buf = np.zeros(pad + int((ainfo.duration or 60.0) * sr * 1.02) + sr, np.float32)
        n = pad
        container = _open_container(self.path, self.item)
        with container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            try:
                for frame in itertools.chain(container.decode(stream), [None]):
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        if n + chunk.size > buf.size:
                            if n + chunk.size > limit * sr:
                                raise _err(f"audio longer than max_audio_s {limit:.0f} s", self.item, "audio")
                            buf = np.concatenate([buf, np.zeros(max(buf.size // 2, chunk.size), np.float32)])
                        buf[n: n + chunk.size] = chunk
                        n += chunk.size
            except av.error.FFmpegError as e:
                declared = f" of {ainfo.duration:.2f} s declared" if ainfo.duration else ""
                raise _err(f"audio decoding failed after {(n - pad) / sr:.2f} s{declared}, corrupt or truncated "
                           f"({e.__class__.__name__}: {e})", self.item, "audio") from e
        got = (n - pad) / sr
        if got < self.cfg.min_duration_s:
            raise _err(f"audio stream decodes to {got:.3f} s (zero duration)", self.item, "audio")
        if ainfo.duration and got < _TRUNCATION_RATIO * ainfo.duration:
            raise _err(f"audio truncated: decoded {got:.2f} s of {ainfo.duration:.2f} s declared", self.item, "audio")
        wave = buf[:n]
        self._audio, self._audio_span = wave, (pad / sr, n / sr)
        self.audio_level = level_dbfs(wave[pad:], sr)
        return wave

    # --------------------------------------------------------------------------------------- frames
    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames as displayed: after the display-matrix rotation (known once a
        frame was decoded; before that, as coded)."""
        vinfo = self.info.video
        if vinfo is None:
            raise _err("no video stream in the file", self.item, "video")
        return (vinfo.height, vinfo.width) if self.rotation % 180 else (vinfo.width, vinfo.height)

    def frames(
        self, *, fps: float | None = None, max_side: int | None = None, fmt: str = "rgb24",
        start: float | None = None, end: float | None = None,
    ) -> Iterator[tuple[float, np.ndarray]]:
        """(time_s, uint8 [H, W, 3] RGB; [H, W] for ``fmt="gray"``), sampled at ``fps`` (default: config).

        Frames are upright: the display-matrix rotation (``frame.rotation``, e.g. a phone's 90) is applied.
        ``start``/``end`` restrict to a window (the decoder seeks to the keyframe before ``start``).
        Raises ``ItemError`` for no video stream, a decoding error, or a stream that ends well before its
        declared duration (truncated file), also when the window asked for lies inside what survives.
        """
        from av.video.reformatter import VideoReformatter

        vinfo = self.info.video
        if vinfo is None:
            raise _err("no video stream in the file", self.item, "video")
        fps = fps if fps is not None else self.cfg.fps
        max_side = max_side if max_side is not None else self.cfg.max_side
        out_fmt = {"rgb24": "rgb24", "rgb": "rgb24", "gray": "gray", "bgr24": "bgr24"}[fmt]
        w, h = vinfo.width, vinfo.height
        scale = 1.0 if not max_side else min(1.0, max_side / max(w, h))
        size = (max(2, round(w * scale)), max(2, round(h * scale))) if scale < 1.0 else (None, None)
        step = 1.0 / fps if fps else 0.0
        # one reformatter for the whole stream: a fresh swscale context per frame costs more than decoding
        reformatter = VideoReformatter()
        frame_dt = 1.0 / (vinfo.fps if vinfo.fps and vinfo.fps == vinfo.fps else 25.0)
        decoded = self._decoded_frames(start, frame_dt)
        first = next(decoded, None)
        if start and first is not None and first[0] > start + 1.5 * frame_dt:
            # some containers (MPEG-PS) seek past the requested time: decode from the start instead
            decoded.close()
            decoded = self._decoded_frames(None, frame_dt)
            first = next(decoded, None)
        if first is None:
            raise _err("video stream has no decodable frame", self.item, "video")
        next_t, last_t = -np.inf, -np.inf
        try:
            for t, frame in itertools.chain([first], decoded):
                last_t = max(last_t, t)
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t > end + 1e-6:
                    return  # the window is done: nothing said about the rest of the stream
                if t + 1e-6 < next_t:
                    continue  # not sampled: never converted
                # keep a steady rate; resync after a jump (a seek, a long frame)
                next_t = t + step if next_t == -np.inf else max(next_t + step, t + 0.5 * step)
                img = reformatter.reformat(frame, size[0], size[1], out_fmt,
                                           interpolation=self.cfg.interpolation).to_ndarray()
                self.rotation = int(round((frame.rotation or 0) / 90.0)) % 4 * 90
                if self.rotation:  # counter-clockwise, as PyAV reports it (np.rot90 turns the same way)
                    img = np.ascontiguousarray(np.rot90(img, self.rotation // 90))
                yield t, img
        finally:
            decoded.close()  # the container closes now, also when the consumer stops early
        # the decoder reached the end of the stream: does it end where the header says it does?
        if vinfo.duration and last_t + 2 * frame_dt < _TRUNCATION_RATIO * vinfo.duration:
            raise _err(f"video truncated: frames end at {last_t:.2f} s of {vinfo.duration:.2f} s declared",
                       self.item, "video")

    def _decoded_frames(self, seek_to: float | None, frame_dt: float) -> Iterator[tuple[float, object]]:
        """(time from container start, av.VideoFrame) for every decoded frame, after an optional seek."""
        import av

        container = _open_container(self.path, self.item)
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            t0 = _container_t0(container)
            if seek_to and seek_to > 0 and stream.time_base:
                container.seek(int((seek_to + t0) / stream.time_base), stream=stream, backward=True)
            n, t = 0, float("nan")
            try:
                for frame in container.decode(stream):
                    n += 1
                    t = (frame.time if frame.time is not None else n * frame_dt) - t0
                    yield float(t), frame
            except av.error.FFmpegError as e:
                raise _err(f"video decoding failed after frame {n} (t={t:.2f} s; "
                           f"{e.__class__.__name__}: {e})", self.item, "video") from e


def open_media(path: str | Path, cfg: MediaConfig | None = None, *, item: str | None = None,
               **options: object) -> MediaFile:
    """Probe ``path`` and return a lazy :class:`MediaFile`; nothing is decoded until asked for.

    ``options`` are :class:`MediaConfig` fields (``fps=``, ``interpolation=``...), applied over ``cfg``."""
    base = cfg or MediaConfig()
    return MediaFile(path, MediaConfig(**{**base.model_dump(), **options}) if options else base, item=item)


def media_config(cfg: StageConfig) -> MediaConfig:
    """The :class:`MediaConfig` part of a config that embeds its fields (``ExtractConfig``)."""
    return MediaConfig(**{k: getattr(cfg, k) for k in MediaConfig.model_fields})


# ------------------------------------------------------------------------------- for audio extractors


def item_audio(item, media, *, stage: str) -> tuple[np.ndarray, int, tuple[float, float]]:  # noqa: ANN001
    """(waveform, sample rate, audio span) of a corpus item, from the shared decoded ``media`` when the
    driver gives one, else decoded here; ``ItemError`` when the item has no usable audio."""
    if media is None:
        if item.path is None:
            raise ItemError("transcript-only item: no media file", item=item.item_id, stage=stage, modality="audio")
        media = open_media(item.path, item=item.item_id)
    wave, sr = media.audio()
    span = getattr(media, "audio_span", (0.0, wave.size / sr))
    return wave, sr, span


def segment_bounds(segments, whole: tuple[float, float]) -> np.ndarray:  # noqa: ANN001 - DataFrame
    """[K, 2] (start, end) of each segment, a NaN bound standing for the matching end of ``whole``
    (a segment without times is the whole file); no segment table (or no time columns) = ``[whole]``.
    The one place where "NaN = whole file" is decided."""
    if segments is None or len(segments) == 0 or "start" not in segments or "end" not in segments:
        return np.array([whole], np.float64)
    w = segments[["start", "end"]].to_numpy(np.float64, copy=True)
    w[np.isnan(w[:, 0]), 0] = whole[0]
    w[np.isnan(w[:, 1]), 1] = whole[1]
    return w


def segment_windows(segments, span: tuple[float, float], min_seconds: float
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:  # noqa: ANN001
    """Segment bounds clipped to the audio span (NaN bounds = the whole span): ``(windows [K, 2],
    usable [K] bool, notes)``. A segment with less than ``min_seconds`` of audio under it is not usable
    (nothing to describe: it stays missing, never zeros); ``notes`` maps its ``segment_id`` to why."""
    lo, hi = span
    raw = segment_bounds(segments, span)
    w = np.clip(raw, lo, hi)
    usable = (w[:, 1] - w[:, 0]) >= min_seconds
    ids = segments["segment_id"].astype(str).tolist() if segments is not None and "segment_id" in segments \
        else [str(i) for i in range(len(w))]
    notes = {
        ids[i]: (f"segment [{raw[i, 0]:.2f}, {raw[i, 1]:.2f}] s has {max(0.0, w[i, 1] - w[i, 0]):.2f} s of audio "
                 f"under it (< {min_seconds} s; audio spans {lo:.2f}-{hi:.2f} s)")
        for i in np.flatnonzero(~usable)
    }
    return w, usable, notes


def merge_windows(windows: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """Union of [K, 2] windows as sorted disjoint windows (frame-level extractors run once per piece)."""
    if len(windows) == 0:
        return windows.reshape(0, 2)
    w = windows[np.argsort(windows[:, 0])]
    out = [w[0].copy()]
    for s, e in w[1:]:
        if s <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append(np.array([s, e]))
    return np.asarray(out, np.float64)
