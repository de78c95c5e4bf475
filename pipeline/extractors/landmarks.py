"""The face models and the per-frame operations of face tracking: detect, fit 68 landmarks, carry them
to the next frame by optical flow, cut a face crop. ``face.py`` decides when to use which.

Models: dlib's HOG frontal detector and its 68-point shape predictor (``dlib-bin`` +
``face-recognition-models``, offline). Optical flow: OpenCV's pyramidal Lucas-Kanade on the 68 points,
checked forward-backward (track the points to the next frame, then back: a point that does not come
back where it started has slid off its feature).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import numpy as np

# Detector box relative to the landmarks' bounding box (left, top, right, bottom), measured as the mean
# over 1,700 HOG detections on the shared clips: lets a tracked box look like a detector box, which is
# what the shape predictor was trained on.
_BOX_FROM_LANDMARKS = (-0.042, -0.094, 1.049, 0.958)
# Lucas-Kanade window and pyramid depth: an 11-px window over 2 pyramid levels follows motions up to
# ~20 px per frame (a 320-px talking head at 25 fps moves a few px); 3 levels cost 2.4x more (0.48 vs
# 0.2 ms per pass, measured) for motions the forward-backward check catches anyway.
LK_WIN = (11, 11)
LK_LEVELS = 2
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)
R_EYE, L_EYE = slice(36, 42), slice(42, 48)


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


_MODELS = threading.local()  # per thread: dlib's detector and predictor are not documented as thread-safe


def models():  # noqa: ANN201 - dlib objects
    """dlib, its face detector and the 68-point predictor, built once per thread: the Prefect thread
    runner may track two videos at once, and sharing one detector between threads has crashed the
    process (heap corruption)."""
    if not hasattr(_MODELS, "value"):
        import dlib  # imported lazily: 0.5 s, only paid by runs that do visual work

        # one thread per process: extraction runs one process per core, and OpenCV's own pool (as many
        # threads as cores) would only oversubscribe them for 68-point flows on 320-px frames
        cv2.setNumThreads(1)
        _MODELS.value = (dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model_path())))
    return _MODELS.value


def box_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = x1 - x0, y1 - y0
    a, b, c, d = _BOX_FROM_LANDMARKS
    return (float(x0 + a * w), float(y0 + b * h), float(x0 + c * w), float(y0 + d * h))


def inter_ocular(pts: np.ndarray) -> float:
    eyes = pts[36:48].reshape(2, 6, 2).mean(1)  # right, left eye centres (one numpy call: runs per frame)
    d = eyes[1] - eyes[0]
    return float(np.sqrt(d @ d))


def upright(pts: np.ndarray) -> np.ndarray:
    """Landmarks ([68, 2], or [N, 68, 2] for N frames at once) rotated so the eye line is horizontal,
    centred between the eyes, in IOD units."""
    cr, cl = pts[..., R_EYE, :].mean(-2), pts[..., L_EYE, :].mean(-2)
    d = cl - cr
    iod = np.maximum(np.linalg.norm(d, axis=-1), 1e-6)[..., None]
    c, s = (d / iod)[..., 0, None], (d / iod)[..., 1, None]
    rel = pts - ((cr + cl) / 2)[..., None, :]
    return np.stack([rel[..., 0] * c + rel[..., 1] * s, rel[..., 1] * c - rel[..., 0] * s], -1) / iod[..., None]


def fit(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The 68 landmarks the shape predictor fits in ``box`` ([68, 2] float32, pixels of ``img``)."""
    dlib, _, predictor = models()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = predictor(img, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def shift(pts: np.ndarray, before: np.ndarray) -> float:
    """Mean point distance between two shapes over the inter-ocular distance (inf for a collapsed one)."""
    iod = inter_ocular(pts)
    return float(np.linalg.norm(pts - before, axis=1).mean() / iod) if iod >= 2.0 else float("inf")


def fit_with_quality(img: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
    """Landmarks in ``box`` and their self-consistency shift (x inter-ocular distance): fit, re-derive
    the box from those landmarks, fit again. Real faces converge; on non-faces the fit wanders."""
    first = fit(img, box)
    second = fit(img, box_from_landmarks(first))
    return second, shift(second, first)


def detect(img: np.ndarray, upsample: int, near: tuple | None) -> tuple[float, float, float, float] | None:
    """The face nearest ``near`` (keep following the same person), else the largest; None if none.

    With a track (``near``), only the region around it is searched (the box grown by its size on every
    side): the HOG detector's cost is proportional to the pixels it scans, and a re-detection there
    is what keeps the track honest; a lost track searches the whole frame."""
    _, detector, _ = models()
    x0 = y0 = 0
    roi = img
    if near is not None:
        size = max(near[2] - near[0], near[3] - near[1])
        x0, y0 = max(0, int(near[0] - size)), max(0, int(near[1] - size))
        roi = img[y0: int(near[3] + size) + 1, x0: int(near[2] + size) + 1]
    dets = list(detector(np.ascontiguousarray(roi), upsample))
    if not dets:
        return None
    boxes = [(d.left() + x0, d.top() + y0, d.right() + x0, d.bottom() + y0) for d in dets]
    if near is not None:
        cx, cy = (near[0] + near[2]) / 2, (near[1] + near[3]) / 2
        return min(boxes, key=lambda b: (cx - (b[0] + b[2]) / 2) ** 2 + (cy - (b[1] + b[3]) / 2) ** 2)
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def flow(prev: np.ndarray, img: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, float]:
    """``pts`` carried from the previous frame to this one, and the median forward-backward error in
    pixels (inf when Lucas-Kanade loses more than a tenth of the points). Points it loses (a jaw point
    outside a tight crop) move with the median motion of the others. Runs on the face's region only:
    the pyramids are built per call, and on a whole frame that is most of the cost."""
    h, w = img.shape
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    m = 0.3 * max(x1 - x0, y1 - y0) + LK_WIN[0] * 2  # head motion between frames + the window
    c0, r0 = max(0, int(x0 - m)), max(0, int(y0 - m))
    c1, r1 = min(w, int(x1 + m) + 1), min(h, int(y1 + m) + 1)
    if c1 - c0 < 8 or r1 - r0 < 8:
        return pts, float("inf")
    a, b = prev[r0:r1, c0:c1], img[r0:r1, c0:c1]
    p0 = (pts - np.float32([c0, r0])).reshape(-1, 1, 2).astype(np.float32)
    kw = {"winSize": LK_WIN, "maxLevel": LK_LEVELS, "criteria": _LK_CRITERIA}
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **kw)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **kw)
    p0, p1, back = p0.reshape(-1, 2), p1.reshape(-1, 2), back.reshape(-1, 2)
    ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1)
    if ok.sum() < 0.9 * len(ok):
        return pts, float("inf")
    if not ok.all():
        p1[~ok] = p0[~ok] + np.median(p1[ok] - p0[ok], axis=0)
    d = back[ok] - p0[ok]
    fb = np.sqrt((d * d).sum(1))
    return p1 + np.float32([c0, r0]), float(np.partition(fb, len(fb) // 2)[len(fb) // 2])  # median, cheaply


def face_crop(img: np.ndarray, pts: np.ndarray, size: int) -> np.ndarray:
    """Square gray crop centred on the landmarks, 1.3x their extent, resized to ``size``."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    m = np.float32([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)],
                    [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
