"""Face detection + landmark tracking shared by the visual extractors (Facet-style features, C3D crops).

Choice of models (see docs/visual.md): dlib's HOG frontal detector and its 68-point shape predictor
(the Facet/OpenFace point set), both offline in ``dlib-bin`` + ``face-recognition-models``. The HOG
detector finds faces that fill a tight 160x160 crop, where OpenCV's Haar cascade finds none.

Per sampled frame (a configurable rate, on a frame downscaled to ``max_side``):

1. *track*: between detections the previous landmarks give the box and only the shape predictor runs
   (~1 ms); the fit is accepted when it is self-consistent (below),
2. *detect*: every ``detect_every`` sampled frames, or when tracking fails, the HOG detector runs; the
   face nearest the track (else the largest) is taken,
3. *whole-frame fallback*: on crop-shaped frames (aspect near 1) where nothing is found, the whole frame
   is used as the box and accepted only when the fit is self-consistent.

Fit quality is a self-consistency score: fit landmarks in a box, re-derive the box from those
landmarks, fit again, and take the mean point shift over the inter-ocular distance. Real faces converge
(median 0.015 on the shared clips); the fitter hallucinates non-converging shapes on non-faces (>= 0.09
on every frame of ``no_face.mp4``). Frames without an accepted face are gaps: absent, never zeros.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from pipeline.errors import ItemError
from pipeline.extractors.base import Extracted, Extractor, MediaItem, MediaSource, TimedFeatures
from pipeline.provenance import StageConfig

# Detector box relative to the landmarks' bounding box (left, top, right, bottom), measured as the mean
# over 1,700 HOG detections on the shared clips: lets a tracked box look like a detector box, which is
# what the shape predictor was trained on.
_BOX_FROM_LANDMARKS = (-0.042, -0.094, 1.049, 0.958)


class FaceTrackConfig(StageConfig):
    fps: float = Field(5.0, gt=0, le=60, description="frames sampled per second of video")
    max_side: int = Field(320, ge=64, le=2048, description="frames are downscaled to this longest side")
    detect_every: int = Field(3, ge=1, description="run the detector every N sampled frames; track between")
    max_missed_detections: int = Field(2, ge=0, description="detector misses a track survives in a row")
    upsample: int = Field(0, ge=0, le=2, description="HOG detector upsampling (finds smaller faces, slower)")
    track_max_shift: float = Field(0.08, gt=0, description="max self-consistency shift (x IOD) to accept a fit")
    fallback_max_shift: float = Field(0.05, gt=0, description="stricter threshold for the whole-frame box")
    whole_frame_fallback: bool = True
    # a 32x32 crop costs ~10 us per frame; keeping it by default lets the Facet and crop extractors share
    # one tracking pass (same config hash) on the same item
    crop_size: int = Field(32, ge=0, le=128, description="also keep a gray face crop of this side (0 = none)")


@dataclass
class FaceFrame:
    time: float
    landmarks: np.ndarray  # [68, 2] float32, pixels of the *original* frame
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original pixels
    quality: float  # self-consistency shift / inter-ocular distance (lower is better)
    source: str  # "detect", "track" or "whole-frame"
    crop: np.ndarray | None = None  # [S, S] uint8 gray face crop when crop_size > 0


@dataclass
class FaceTrack:
    item_id: str
    frame_size: tuple[int, int]  # width, height of the original frames
    sample_times: np.ndarray  # [N] times of every sampled frame
    frames: list[FaceFrame] = field(default_factory=list)
    frame_step: float = 0.2  # seconds between sampled frames

    @property
    def n_sampled(self) -> int:
        return len(self.sample_times)

    @property
    def face_times(self) -> np.ndarray:
        return np.array([f.time for f in self.frames], np.float64)

    def gaps(self) -> list[tuple[float, float]]:
        """Runs of sampled frames with no accepted face, as (first, last) sample times."""
        have = np.isin(np.round(self.sample_times, 6), np.round(self.face_times, 6))
        out, start, prev = [], None, 0.0
        for t, ok in zip(self.sample_times, have, strict=True):
            if not ok and start is None:
                start = t
            if ok and start is not None:
                out.append((float(start), float(prev)))
                start = None
            prev = t
        if start is not None:
            out.append((float(start), float(self.sample_times[-1])))
        return out


# ------------------------------------------------------------------------------------------- models


def landmark_model_path() -> Path:
    """The 68-point model file of ``face-recognition-models``, located without importing the package
    (its ``__init__`` needs ``pkg_resources``, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise ImportError(f"68-point landmark model not found at {path}")
    return path


@lru_cache(maxsize=1)
def _models():  # noqa: ANN202 - dlib objects
    import dlib  # imported lazily: 0.5 s, only paid by runs that do visual work

    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model_path()))


# ------------------------------------------------------------------------------------------ frames


def _downscale(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(gray), scale


def _frame_stream(media: MediaSource, fps: float, max_side: int, start: float | None, end: float | None):  # noqa: ANN202
    """Frames from the shared media object: ``pipeline.media.MediaFile`` samples, downscales, converts to
    gray and seeks to the window itself; a plain ``MediaSource`` yields every frame (filtered here).

    Seeking is only an optimisation: some containers (MPEG-PS) land after the requested time, so when
    the first frame comes later than one sampling step past ``start`` the window is decoded from 0."""
    try:
        it = iter(media.frames(fps=fps, max_side=max_side, fmt="gray", start=start, end=end))  # type: ignore[call-arg]
    except TypeError:
        yield from media.frames()  # type: ignore[misc]
        return
    first = next(it, None)
    if first is not None and start and first[0] > start + 1.0 / fps:
        it = iter(media.frames(fps=fps, max_side=max_side, fmt="gray", end=end))  # type: ignore[call-arg]
        first = next(it, None)
    if first is not None:
        yield first
        yield from it


def sampled_frames(
    item: MediaItem, media: MediaSource | None, fps: float, max_side: int
) -> Iterator[tuple[float, np.ndarray, float, tuple[int, int]]]:
    """(time, downscaled gray frame, scale, original (w, h)) at ``fps`` inside the item's segments.

    Decoding is ``pipeline.media``'s (PyAV, its own ffmpeg): the driver's shared media object when given,
    else the file opened here. Only the union of the segments is decoded (seeking to each window).
    """
    if media is None:
        if item.path is None:
            raise ItemError("transcript-only item: no media file", item=item.item_id, stage="decode", modality="video")
        from pipeline.media import open_media

        media = open_media(item.path, item=item.item_id)
    vinfo = getattr(getattr(media, "info", None), "video", None)
    windows = _segment_windows(item)
    pieces = [(None, None)] if windows is None else [(float(a), float(b)) for a, b in merge_windows(windows)]
    step = 1.0 / fps
    for lo, hi in pieces:
        next_t = -np.inf
        for t, img in _frame_stream(media, fps, max_side, lo, hi):
            if t + 1e-6 < next_t or (lo is not None and not lo - 1e-6 <= t <= hi + 1e-6):
                continue
            # keep a steady rate; resync after a jump (a long frame, a seek)
            next_t = t + step if next_t == -np.inf else max(next_t + step, t + 0.5 * step)
            gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            small, scale = _downscale(gray, max_side)
            if vinfo is not None and vinfo.width:
                size = (int(vinfo.width), int(vinfo.height))
                scale = small.shape[1] / size[0]
            else:
                size = (round(small.shape[1] / scale), round(small.shape[0] / scale))
            yield float(t), small, scale, size


def merge_windows(windows: np.ndarray) -> np.ndarray:
    """Union of [K, 2] windows as sorted disjoint windows, so each stretch of video is decoded once."""
    w = windows[np.argsort(windows[:, 0])]
    out = [w[0].copy()]
    for a, b in w[1:]:
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append(np.array([a, b]))
    return np.asarray(out, np.float64)


def _segment_windows(item: MediaItem) -> np.ndarray | None:
    """[K, 2] time windows the segments cover, or None for the whole file (any NaN bound)."""
    seg = item.segments
    if seg is None or len(seg) == 0 or "start" not in seg or "end" not in seg:
        return None
    w = seg[["start", "end"]].to_numpy(np.float64)
    return None if np.isnan(w).any() else w


# ----------------------------------------------------------------------------------------- fitting


def _rect(dlib, box: tuple[float, float, float, float]):  # noqa: ANN001, ANN202
    x0, y0, x1, y1 = box
    return dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))


def _fit(predictor, dlib, img: np.ndarray, box) -> np.ndarray:  # noqa: ANN001
    shape = predictor(img, _rect(dlib, box))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def box_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = x1 - x0, y1 - y0
    a, b, c, d = _BOX_FROM_LANDMARKS
    return (float(x0 + a * w), float(y0 + b * h), float(x0 + c * w), float(y0 + d * h))


def inter_ocular(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))


def fit_with_quality(img: np.ndarray, box) -> tuple[np.ndarray, float]:  # noqa: ANN001
    """Landmarks in ``box`` and their self-consistency shift (x inter-ocular distance)."""
    dlib, _, predictor = _models()
    first = _fit(predictor, dlib, img, box)
    second = _fit(predictor, dlib, img, box_from_landmarks(first))
    iod = inter_ocular(second)
    if iod < 2.0:  # collapsed shape: certainly not a face
        return second, float("inf")
    return second, float(np.linalg.norm(second - first, axis=1).mean() / iod)


def _detect(img: np.ndarray, upsample: int, near: tuple | None):  # noqa: ANN202
    _, detector, _ = _models()
    dets = list(detector(img, upsample))
    if not dets:
        return None
    boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
    if near is not None:  # keep following the same person
        cx, cy = (near[0] + near[2]) / 2, (near[1] + near[3]) / 2
        return min(boxes, key=lambda b: (cx - (b[0] + b[2]) / 2) ** 2 + (cy - (b[1] + b[3]) / 2) ** 2)
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def face_crop(img: np.ndarray, pts: np.ndarray, size: int) -> np.ndarray:
    """Square gray crop centred on the landmarks, 1.3x their extent, resized to ``size``."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    m = np.float32([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)],
                    [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


# ----------------------------------------------------------------------------------------- tracking


def track_faces(item: MediaItem, media: MediaSource | None, cfg: FaceTrackConfig) -> FaceTrack:
    """Sample, detect and track one face through an item; raise ``ItemError`` when no frame has one."""
    times: list[float] = []
    frames: list[FaceFrame] = []
    size = (0, 0)  # original (w, h), from the last sampled frame
    prev: tuple | None = None  # previous accepted box (downscaled pixels)
    prev_pts: np.ndarray | None = None
    missed = 0  # detector misses in a row while the track is kept alive by tracking alone
    for k, (t, img, scale, frame_size) in enumerate(sampled_frames(item, media, cfg.fps, cfg.max_side)):
        if times and t - times[-1] > 2.5 / cfg.fps:
            prev = prev_pts = None  # a jump between segment windows: re-detect, never track across it
        times.append(t)
        size = frame_size
        pts, q, source = None, float("inf"), ""
        tried_track = prev_pts is not None and k % cfg.detect_every != 0
        if tried_track:
            pts, q = fit_with_quality(img, box_from_landmarks(prev_pts))
            source = "track"
            if q > cfg.track_max_shift:
                pts = None
        if pts is None:
            box = _detect(img, cfg.upsample, prev)
            if box is not None:
                pts, q = fit_with_quality(img, box)
                source, missed = "detect", 0
            elif prev_pts is not None and not tried_track and missed < cfg.max_missed_detections:
                missed += 1  # the detector can miss a turned face the tracker still holds
                pts, q = fit_with_quality(img, box_from_landmarks(prev_pts))
                source = "track"
                if q > cfg.track_max_shift:
                    pts = None
            elif cfg.whole_frame_fallback and 0.75 <= img.shape[1] / img.shape[0] <= 1.34:
                h, w = img.shape
                pts, q = fit_with_quality(img, (0.0, 0.0, w - 1.0, h - 1.0))
                source = "whole-frame"
                if q > cfg.fallback_max_shift:
                    pts = None
        if pts is None:
            prev = prev_pts = None
            missed = 0
            continue
        prev, prev_pts = box_from_landmarks(pts), pts
        crop = face_crop(img, pts, cfg.crop_size) if cfg.crop_size else None
        frames.append(FaceFrame(t, pts / scale, tuple(v / scale for v in prev), q, source, crop))
    if not times:
        raise ItemError("no video frames could be sampled (empty stream or segments outside the video)",
                        item=item.item_id, stage="face", modality="video")
    if not frames:
        raise ItemError(f"no face in {len(times)} sampled frames", item=item.item_id, stage="face", modality="video")
    return FaceTrack(item.item_id, size, np.asarray(times), frames, 1.0 / cfg.fps)


def segment_notes(track: FaceTrack, segments) -> dict[str, str]:  # noqa: ANN001 - DataFrame
    """segment_id -> why the segment has no visual features (read by the extraction driver)."""
    notes: dict[str, str] = {}
    faces = track.face_times
    for seg in segments.itertuples():
        lo = track.sample_times[0] if np.isnan(seg.start) else seg.start
        hi = track.sample_times[-1] if np.isnan(seg.end) else seg.end
        if not ((faces >= lo - 1e-6) & (faces <= hi + 1e-6)).any():
            n = int(((track.sample_times >= lo - 1e-6) & (track.sample_times <= hi + 1e-6)).sum())
            notes[str(seg.segment_id)] = (f"no face in the {n} sampled frames of the segment" if n
                                          else "no video frame sampled inside the segment")
    return notes


def track_stats(track: FaceTrack) -> dict:
    sources = [f.source for f in track.frames]
    return {"sampled_frames": track.n_sampled, "face_frames": len(track.frames), "gaps": len(track.gaps()),
            **{f"{s}_frames": sources.count(s) for s in ("detect", "track", "whole-frame")}}


_LAST = threading.local()  # per thread: task runners may extract several items at once


def track_faces_cached(item: MediaItem, media: MediaSource | None, cfg: FaceTrackConfig) -> FaceTrack:
    """``track_faces`` remembering the last item (per thread), so two visual extractors on one item
    track it once."""
    key = (item.item_id, str(item.path), id(media), cfg.config_hash())
    if getattr(_LAST, "key", None) != key:
        _LAST.key, _LAST.track = None, None
        track = track_faces(item, media, cfg)
        _LAST.key, _LAST.track = key, track
    return _LAST.track


class FaceTrackingExtractor(Extractor):
    """Base of the visual extractors: one shared (cached) tracking pass per item, and per-segment notes
    for segments without a face, which the driver turns into quarantine records."""

    modality = "video"
    needs = "frames"

    def track(self, item: MediaItem, media: MediaSource | None, cfg: FaceTrackConfig) -> FaceTrack:
        return track_faces_cached(item, media, cfg)

    @staticmethod
    def result(features: TimedFeatures, track: FaceTrack, item: MediaItem) -> Extracted:
        """The features with the track's per-segment notes (no face) and counters."""
        return Extracted(features, segment_notes(track, item.segments), track_stats(track))
