"""Face tracking shared by the visual extractors (Facet-style features, C3D crops): one face followed
through every sampled frame of an item (``track.fps``, default 25: a vector per frame, as Facet and
OpenFace give), without fitting every frame.

Key frames and flow frames (see docs/visual.md for the measured cost in landmark error):

1. *key frame* (every ``refit_every`` sampled frames, and whenever the flow degrades): the landmarks are
   fitted (dlib 68 points, ``landmarks.py``) in the box of the previous landmarks; once
   ``detect_every`` sampled frames have passed since it last ran, or when that fit fails, the HOG
   detector runs first, around the track (the face nearest
   the track, else the largest); on crop-shaped frames where nothing is found, the whole frame is the
   box (*whole-frame fallback*). Each fit is checked by its self-consistency shift (fit, re-derive the
   box, fit again; mean point shift / inter-ocular distance): real faces converge (median 0.015 on the
   shared clips), the fitter hallucinates non-converging shapes on non-faces (>= 0.09 on ``no_face.mp4``).
2. *flow frame* (between key frames): the 68 points are carried from the previous frame by pyramidal
   Lucas-Kanade, which costs a tenth of a fit. The frame becomes a key frame instead when the flow
   degrades: a point lost, a median forward-backward error above ``max_flow_error`` (x IOD), a shape
   that drifted from the last fitted one by more than ``max_shape_drift`` (mean point distance in
   upright IOD units: points sliding off the face deform it), or a face crop that changed by more than
   ``max_appearance_change`` since the last fit (a mouth opening or a blink under points that stay put).

Frames are decoded once, as gray at ``max_side`` by the decoder's own scaler and upright (display-matrix
rotation applied), by ``pipeline.media``. Frames without an accepted face are gaps: absent, never zeros.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from pipeline.errors import ItemError
from pipeline.extractors.base import Extracted, Extractor, MediaItem, MediaSource, TimedFeatures
from pipeline.extractors.landmarks import (
    box_from_landmarks,
    detect,
    face_crop,
    fit,
    fit_with_quality,
    flow,
    inter_ocular,
    shift,
    upright,
)
from pipeline.media import MediaFile, merge_windows, open_media, segment_bounds
from pipeline.provenance import StageConfig


class FaceTrackConfig(StageConfig):
    fps: float = Field(25.0, gt=0, le=60, description="frames sampled per second of video (a feature row each)")
    max_side: int = Field(320, ge=64, le=2048, description="frames are downscaled to this longest side")
    refit_every: int = Field(5, ge=1, description="fit the landmarks every N sampled frames; optical flow "
                             "carries them in between (1 = fit every frame)")
    max_flow_error: float = Field(0.01, gt=0, description="median forward-backward flow error (x IOD) above "
                                  "which a frame is re-fitted")
    max_shape_drift: float = Field(0.08, gt=0, description="mean drift of the flowed shape from the last fitted "
                                   "one (upright, x IOD) above which a frame is re-fitted")
    max_appearance_change: float = Field(0.02, gt=0, description="mean absolute change of the 24-px face crop "
                                         "since the last key frame (0-1 grey levels) above which a frame is re-fitted")
    detect_every: int = Field(15, ge=1, description="run the detector at the first key frame N sampled frames "
                              "after the last detection (0.6 s at 25 fps); fit in the track between")
    max_missed_detections: int = Field(2, ge=0, description="detector misses a track survives in a row")
    search_every: int = Field(5, ge=1, description="without a track, look for a face every N sampled frames "
                              "(5 Hz at 25 fps: a face that appears is found within 0.2 s)")
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
    quality: float  # self-consistency shift / inter-ocular distance of the last fit (lower is better)
    source: str  # "detect", "track" (fitted in the previous box), "whole-frame" or "flow"
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



# ------------------------------------------------------------------------------------------ frames


def sampled_frames(item: MediaItem, media: MediaSource | None, fps: float, max_side: int
                   ) -> Iterator[tuple[float, np.ndarray, MediaFile]]:
    """(time, upright gray frame at ``max_side``, the media) at ``fps`` inside the item's segments.

    Sampling, seeking, rotation and downscaling are ``pipeline.media.MediaFile.frames``'; a source that
    cannot sample (the plain ``MediaSource`` protocol) is replaced by the item's file decoded here. Only
    the union of the segments is decoded, one window at a time."""
    if not isinstance(media, MediaFile):
        if item.path is None:
            raise ItemError("transcript-only item: no media file", item=item.item_id, stage="decode", modality="video")
        media = open_media(item.path, item=item.item_id)
    for lo, hi in merge_windows(segment_bounds(item.segments, (0.0, media.duration))):
        for t, img in media.frames(fps=fps, max_side=max_side, fmt="gray", start=float(lo), end=float(hi)):
            yield t, img, media


# ----------------------------------------------------------------------------------------- tracking


_LOOK = 24  # side of the crop compared by the appearance check


class _Tracker:
    """State of one face track through consecutive sampled frames (downscaled pixels)."""

    def __init__(self, cfg: FaceTrackConfig) -> None:
        self.cfg = cfg
        self.frames: list[FaceFrame] = []
        self.since_detect = 0  # sampled frames since the detector last ran
        self.since_search = 0  # sampled frames since the last search without a track
        self.reset(search_now=True)

    def reset(self, *, search_now: bool) -> None:
        """Forget the track; ``search_now``: look for a face on the next frame (else at the search rate)."""
        if search_now:
            self.since_search = self.cfg.search_every
        self.box: tuple | None = None  # last accepted box
        self.pts: np.ndarray | None = None  # last accepted landmarks
        self.prev: np.ndarray | None = None  # the previous frame (flow)
        self.fit_shape: np.ndarray | None = None  # upright shape of the last fit
        self.fit_look: np.ndarray | None = None  # small face crop at the last fit (appearance check)
        self.quality = float("inf")
        self.since_fit = 0
        self.missed = 0  # detector misses in a row while the track is kept alive by fitting alone

    def step(self, t: float, img: np.ndarray, scale: float) -> None:
        cfg = self.cfg
        self.since_detect += 1
        if self.pts is None:  # no track: search at a lower rate, the frames between are gaps
            self.since_search += 1
            if self.since_search <= cfg.search_every:
                return
            self.since_search = 1
        pts, flowed, source = None, None, "flow"
        if self.pts is not None and self.prev is not None and cfg.refit_every > 1:
            flowed = self._flow(img)
            if flowed is not None and self.since_fit < cfg.refit_every:
                pts = flowed
        if pts is None:
            pts, self.quality, source = self._key_frame(img, flowed)
            self.since_fit = 0
            self.fit_shape = None if pts is None else upright(pts.astype(np.float64))
            self.fit_look = None if pts is None else face_crop(img, pts, _LOOK).astype(np.float32)
        self.prev, self.since_fit = img, self.since_fit + 1
        if pts is None:
            self.reset(search_now=self.pts is not None)  # a track just lost: look again on the next frame
            return
        self.box, self.pts = box_from_landmarks(pts), pts
        crop = face_crop(img, pts, cfg.crop_size) if cfg.crop_size else None
        self.frames.append(FaceFrame(t, pts / scale, tuple(v / scale for v in self.box), self.quality, source, crop))

    def _flow(self, img: np.ndarray) -> np.ndarray | None:
        """The landmarks carried by optical flow, or None when the flow degrades. Points that fail a check
        do not serve as the key frame's first fit either (measured: one fit in their box instead of the
        fit-refit check raised the median clip error on LRS2 / MOUD from 0.025 / 0.020 to 0.041 / 0.045 IOD)."""
        pts, fb = flow(self.prev, img, self.pts)
        iod = inter_ocular(pts)
        if not iod > 2.0 or not fb / iod <= self.cfg.max_flow_error:
            return None
        drift = np.linalg.norm(upright(pts.astype(np.float64)) - self.fit_shape, axis=1).mean()
        if drift > self.cfg.max_shape_drift:
            return None
        # what the flow cannot see: an expression that changes the face under points that stay put
        # (a mouth opening, a blink) changes the crop that those points frame
        look = np.abs(face_crop(img, pts, _LOOK).astype(np.float32) - self.fit_look).mean() / 255.0
        return pts if look <= self.cfg.max_appearance_change else None

    def _key_frame(self, img: np.ndarray, flowed: np.ndarray | None) -> tuple[np.ndarray | None, float, str]:
        """Fit in the track's box, detect, or fall back to the whole frame; (landmarks, shift, source).

        After a good flow the flowed shape is the first fit of the self-consistency check (one fit
        instead of two): fitted in its box, a real face stays where the flow put it."""
        cfg = self.cfg
        tried_track = self.pts is not None and self.since_detect < cfg.detect_every
        if tried_track:
            if flowed is not None:
                pts = fit(img, box_from_landmarks(flowed))
                q = shift(pts, flowed)
            else:
                pts, q = fit_with_quality(img, box_from_landmarks(self.pts))
            if q <= cfg.track_max_shift:
                return pts, q, "track"
        box = detect(img, cfg.upsample, self.box)
        self.since_detect = 0
        if box is not None:
            self.missed = 0
            pts, q = fit_with_quality(img, box)  # the detector is the evidence: accepted whatever the shift
            return pts, q, "detect"
        if self.pts is not None and not tried_track and self.missed < cfg.max_missed_detections:
            self.missed += 1  # the detector can miss a turned face the tracker still holds
            pts, q = fit_with_quality(img, box_from_landmarks(self.pts))
            return (pts, q, "track") if q <= cfg.track_max_shift else (None, q, "")
        if cfg.whole_frame_fallback and 0.75 <= img.shape[1] / img.shape[0] <= 1.34:
            h, w = img.shape
            pts, q = fit_with_quality(img, (0.0, 0.0, w - 1.0, h - 1.0))
            return (pts, q, "whole-frame") if q <= cfg.fallback_max_shift else (None, q, "")
        return None, float("inf"), ""


def track_faces(item: MediaItem, media: MediaSource | None, cfg: FaceTrackConfig) -> FaceTrack:
    """Sample, detect, fit and flow one face through an item; ``ItemError`` when no frame has one."""
    tracker = _Tracker(cfg)
    times: list[float] = []
    source: MediaFile | None = None
    for t, img, source in sampled_frames(item, media, cfg.fps, cfg.max_side):
        if times and t - times[-1] > 2.5 / cfg.fps:
            tracker.reset(search_now=True)  # a jump between segment windows: re-detect, never track across it
        times.append(t)
        tracker.step(t, img, img.shape[1] / source.frame_size[0])
    if not times or source is None:
        raise ItemError("no video frames could be sampled (empty stream or segments outside the video)",
                        item=item.item_id, stage="face", modality="video")
    if not tracker.frames:
        raise ItemError(f"no face in {len(times)} sampled frames", item=item.item_id, stage="face", modality="video")
    return FaceTrack(item.item_id, source.frame_size, np.asarray(times), tracker.frames, 1.0 / cfg.fps)


def segment_notes(track: FaceTrack, segments) -> dict[str, str]:  # noqa: ANN001 - DataFrame
    """segment_id -> why the segment has no visual features (read by the extraction driver)."""
    notes: dict[str, str] = {}
    faces = track.face_times
    bounds = segment_bounds(segments, (track.sample_times[0], track.sample_times[-1]))
    for sid, (lo, hi) in zip(segments["segment_id"].astype(str), bounds, strict=True):
        if not ((faces >= lo - 1e-6) & (faces <= hi + 1e-6)).any():
            n = int(((track.sample_times >= lo - 1e-6) & (track.sample_times <= hi + 1e-6)).sum())
            notes[sid] = (f"no face in the {n} sampled frames of the segment" if n
                          else "no video frame sampled inside the segment")
    return notes


def track_stats(track: FaceTrack) -> dict:
    sources = [f.source for f in track.frames]
    return {"sampled_frames": track.n_sampled, "face_frames": len(track.frames), "gaps": len(track.gaps()),
            **{f"{s}_frames": sources.count(s) for s in ("detect", "track", "whole-frame", "flow")}}


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
