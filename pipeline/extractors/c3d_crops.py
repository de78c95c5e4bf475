"""Face-crop clips per segment: the input of the 3D-CNN (``models/c3d.py``, ``pipeline/visual_cnn.py``).

For each segment, the tracked face crops (gray, ``crop_size`` square, from ``face.py``) of the sampled
frames inside the segment are resampled to ``clip_len`` evenly spaced frames (a short segment repeats
frames, a long one is strided) and stored flattened row-major as [T, S, S] in [0, 1]: one interval per
segment, so alignment onto the segments is the identity (pool with ``mean``/``max``/``min``; ``std`` of a
single row would be zeros). A segment with no face frame is absent (the store records the modality as
missing, with the reason in the result's ``notes``), never a clip of zeros.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from pipeline.errors import ItemError
from pipeline.extractors.base import Extracted, MediaItem, MediaSource, TimedFeatures
from pipeline.extractors.face import FaceTrack, FaceTrackConfig, FaceTrackingExtractor
from pipeline.extractors.registry import register_extractor
from pipeline.media import segment_bounds
from pipeline.provenance import StageConfig


class FaceCropsConfig(StageConfig):
    track: FaceTrackConfig = FaceTrackConfig()
    clip_len: int = Field(16, ge=1, le=64)

    @model_validator(mode="after")
    def _crops_on(self) -> FaceCropsConfig:
        if self.track.crop_size <= 0:
            raise ValueError("face_crops needs track.crop_size > 0")
        return self

    @property
    def dim(self) -> int:
        return self.clip_len * self.track.crop_size**2


def segment_clips(track: FaceTrack, windows: np.ndarray, clip_len: int) -> list[np.ndarray | None]:
    """One [clip_len, S, S] float32 clip per window (None where the window holds no face frame)."""
    times = track.face_times
    out: list[np.ndarray | None] = []
    for start, end in windows:
        idx = np.flatnonzero((times >= start - 1e-6) & (times <= end + 1e-6))
        if len(idx) == 0:
            out.append(None)
            continue
        pick = idx[np.round(np.linspace(0, len(idx) - 1, clip_len)).astype(int)]
        out.append(np.stack([track.frames[i].crop for i in pick]).astype(np.float32) / 255.0)
    return out


@register_extractor("face_crops")
class FaceCropsExtractor(FaceTrackingExtractor):
    """Per-segment gray face-crop clips (clip_len x S x S, flattened) for the 3D-CNN."""

    Config = FaceCropsConfig

    def extract(self, item: MediaItem, media: MediaSource | None) -> Extracted:
        cfg: FaceCropsConfig = self.cfg  # type: ignore[assignment]
        track = self.track(item, media, cfg.track)
        windows = segment_bounds(item.segments, (track.sample_times[0], track.sample_times[-1] + track.frame_step))
        clips = segment_clips(track, windows, cfg.clip_len)
        keep = [i for i, c in enumerate(clips) if c is not None]
        if not keep:
            raise ItemError(f"faces found at {len(track.frames)} frames but none inside the {len(windows)} segments",
                            item=item.item_id, stage="face", modality="video")
        values = np.stack([clips[i].reshape(-1) for i in keep])
        return self.result(TimedFeatures(windows[keep], values, None), track, item)
