"""Facet-style facial features from 68 tracked landmarks, one row per sampled frame with a face.

Emotient FACET (the visual features of CMU-MOSI) reports action-unit evidence and head pose per frame.
Its models are proprietary; this extractor computes transparent proxies of the same quantities from the
dlib 68-point landmarks (``face.py``), so every dimension has a name and a geometric definition:

* geometry: distances normalised by the inter-ocular distance (IOD) after rotating the face upright,
  so they are invariant to face size, position and in-plane rotation;
* action-unit proxies (FACS numbers in the names): brow raise (AU1/AU2), brow lowerer (AU4), eye
  openness (AU5/AU7/AU45), nose wrinkle (AU9), upper-lip raise (AU10), lip-corner pull / depress
  (AU12/AU15), chin raise (AU17), lip stretch (AU20), lip press (AU24), lips part (AU25), jaw drop (AU26);
* head pose: yaw / pitch / roll in degrees from ``cv2.solvePnP`` of 7 landmarks on a generic 3D face
  (approximate: no per-person shape, focal length = frame width), plus face position and scale.

Frames without a face are absent intervals (never zeros); alignment pools the present frames.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from pipeline.extractors.base import Extracted, MediaItem, MediaSource, TimedFeatures
from pipeline.extractors.face import FaceTrack, FaceTrackConfig, FaceTrackingExtractor
from pipeline.extractors.landmarks import L_EYE, R_EYE, upright
from pipeline.extractors.registry import register_extractor
from pipeline.provenance import StageConfig

# dlib 68-point indices (0-based). "r"/"l" are the subject's right/left (image left/right).
GEOMETRY_NAMES = [
    "au01_inner_brow_raise_r", "au01_inner_brow_raise_l", "au02_outer_brow_raise_r", "au02_outer_brow_raise_l",
    "au04_brow_distance", "au05_07_45_eye_open_r", "au05_07_45_eye_open_l", "au09_nose_wrinkle",
    "au10_upper_lip_raise", "au12_15_lip_corner_pull_r", "au12_15_lip_corner_pull_l", "au20_mouth_width",
    "au25_lips_part", "au26_jaw_drop", "mouth_aspect_ratio", "au24_upper_lip_thickness",
    "au24_lower_lip_thickness", "au17_chin_raise", "nasolabial_r", "nasolabial_l", "face_height",
    "face_width", "jaw_asymmetry",
]
POSE_NAMES = ["head_yaw_deg", "head_pitch_deg", "head_roll_deg", "face_x", "face_y", "face_scale"]
QUALITY_NAMES = ["fit_quality"]

# Generic 3D positions (mm; x right, y down, z away from the camera, nose tip at the origin) of
# nose tip, nose bridge, chin, outer eye corners and mouth corners: average adult proportions.
_POSE_IDX = [30, 27, 8, 36, 45, 48, 54]
_POSE_3D = np.array(
    [[0, 0, 0], [0, -48, 22], [0, 66, 18], [-44, -36, 32], [44, -36, 32], [-27, 30, 22], [27, 30, 22]],
    np.float64,
)


class FacetConfig(StageConfig):
    track: FaceTrackConfig = FaceTrackConfig()
    include_landmarks: bool = Field(False, description="also emit the 136 aligned landmark coordinates")
    include_pose: bool = True


def _eye_open(a: np.ndarray) -> np.ndarray:
    # eye aspect ratio: mean vertical lid distance over eye width ([N, 6, 2] -> [N])
    n = np.linalg.norm
    return (n(a[:, 1] - a[:, 5], axis=1) + n(a[:, 2] - a[:, 4], axis=1)) / (2 * n(a[:, 0] - a[:, 3], axis=1) + 1e-6)


def geometry(pts: np.ndarray) -> np.ndarray:
    """The ``GEOMETRY_NAMES`` features of N faces [N, 68, 2] (upright coordinates, IOD units, y down)."""
    p = upright(pts.astype(np.float64))
    y = p[:, :, 1]
    eye_y_r, eye_y_l = p[:, R_EYE, 1].mean(1), p[:, L_EYE, 1].mean(1)
    mouth_mid_y = (y[:, 51] + y[:, 57]) / 2

    def dist(i: int, j: int) -> np.ndarray:
        return np.linalg.norm(p[:, i] - p[:, j], axis=1)

    return np.stack([
        eye_y_r - y[:, 21], eye_y_l - y[:, 22], eye_y_r - y[:, 17], eye_y_l - y[:, 26],
        dist(21, 22), _eye_open(p[:, R_EYE]), _eye_open(p[:, L_EYE]), y[:, 33] - (eye_y_r + eye_y_l) / 2,
        dist(51, 33), mouth_mid_y - y[:, 48], mouth_mid_y - y[:, 54], dist(48, 54),
        dist(62, 66), dist(8, 33), dist(62, 66) / (dist(60, 64) + 1e-6), dist(51, 62),
        dist(57, 66), dist(57, 8), dist(31, 48), dist(35, 54), dist(27, 8),
        dist(0, 16), dist(8, 0) - dist(8, 16),
    ], axis=1)


def head_pose(pts: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(yaw, pitch, roll) in degrees; (0, 0, 0) = looking into the camera, upright."""
    w, h = frame_size
    cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(_POSE_3D, pts[_POSE_IDX].astype(np.float64), cam, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        ok, rvec, _ = cv2.solvePnP(_POSE_3D, pts[_POSE_IDX].astype(np.float64), cam, None)
    rot, _ = cv2.Rodrigues(rvec)
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1, 1)))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return np.array([yaw, pitch, roll], np.float64)


def facet_features(track: FaceTrack, cfg: FacetConfig) -> np.ndarray:
    w, h = track.frame_size
    pts = np.stack([f.landmarks for f in track.frames]).astype(np.float64)  # [N, 68, 2]
    parts = [geometry(pts)]
    if cfg.include_pose:
        iod = np.linalg.norm(pts[:, L_EYE].mean(1) - pts[:, R_EYE].mean(1), axis=1)
        centre = pts.mean(1)
        parts += [np.stack([head_pose(p, track.frame_size) for p in pts]),
                  np.stack([centre[:, 0] / w, centre[:, 1] / h, iod / np.hypot(w, h)], axis=1)]
    parts.append(np.array([[f.quality] for f in track.frames]))
    if cfg.include_landmarks:
        parts.append(upright(pts).reshape(len(pts), -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


def facet_dim_names(cfg: FacetConfig) -> list[str]:
    names = list(GEOMETRY_NAMES) + (POSE_NAMES if cfg.include_pose else []) + QUALITY_NAMES
    if cfg.include_landmarks:
        names += [f"lm{i:02d}_{a}" for i in range(68) for a in "xy"]
    return names


@register_extractor("facet")
class FacetExtractor(FaceTrackingExtractor):
    """Frame-level Facet-style features (AU proxies, geometry, head pose) from tracked 68 landmarks."""

    Config = FacetConfig

    def extract(self, item: MediaItem, media: MediaSource | None) -> Extracted:
        cfg: FacetConfig = self.cfg  # type: ignore[assignment]
        track = self.track(item, media, cfg.track)
        values = facet_features(track, cfg)
        t = track.face_times
        intervals = np.stack([t, t + track.frame_step], axis=1)
        return self.result(TimedFeatures(intervals, values, facet_dim_names(cfg)), track, item)
