"""Alignment of timed features onto reference intervals, with CMU-MultimodalSDK semantics, vectorised.

For each reference interval ``[r0, r1]`` (a segment, or a word):

1. a reference shorter than ``epsilon`` is skipped (nothing is aligned to it: the result is *missing*);
2. a feature interval ``[s0, s1]`` overlaps it when ``s0 < r1 + eps`` and ``s1 > r0 - eps``;
3. overlapping intervals are clipped to ``[max(s0, r0), min(s1, r1)]`` and pieces of length <= ``eps``
   are dropped (a frame that only touches the boundary does not count);
4. the remaining pieces are collapsed by a function: ``mean`` (the SDK's usual ``np.mean(features, 0)``:
   unweighted), ``weighted_mean`` (by clipped duration), ``max``, ``min``, ``std``, or any callable
   ``f(intervals, features) -> [D]`` exactly like an SDK collapse function.

This is ``mmdataset.align`` + ``__intersect_and_copy`` + ``__collapse`` from mmsdk 0.0.6 (epsilon
``10e-4``), computed for all reference intervals at once with an overlap matrix (in row blocks, so memory
stays bounded on long videos) instead of one Python loop per segment. ``tests/test_align.py`` checks it
against mmsdk itself on real data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.extractors.base import TimedFeatures

EPSILON = 10e-4  # the SDK's value (1e-3 s)
CollapseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
COLLAPSES = ("mean", "weighted_mean", "max", "min", "std")
_BLOCK_CELLS = 1 << 22  # overlap-matrix cells per block (~4 M): bounds memory on hour-long inputs


@dataclass
class Aligned:
    """One collapsed vector per reference interval; ``present`` False = nothing overlapped (missing).

    ``values`` rows that are not present are NaN, so they can never be mistaken for data.
    """

    values: np.ndarray  # [S, D] float32
    present: np.ndarray  # [S] bool
    counts: np.ndarray  # [S] number of pieces collapsed


def _overlaps(ref: np.ndarray, sub: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean hit matrix [S, T] and clipped piece lengths [S, T] (SDK rules 2-3)."""
    r0, r1 = ref[:, 0:1], ref[:, 1:2]
    s0, s1 = sub[None, :, 0], sub[None, :, 1]
    lo, hi = np.maximum(s0, r0), np.minimum(s1, r1)
    hit = (s0 - r1 < eps) & (s1 - r0 > -eps)
    length = hi - lo
    hit &= np.abs(length) > eps
    hit &= (np.abs(r1 - r0) >= eps)  # rule 1: zero-length references get nothing
    return hit, np.where(hit, length, 0.0)


def _blocks(n_ref: int, n_sub: int) -> list[slice]:
    step = max(1, _BLOCK_CELLS // max(1, n_sub))
    return [slice(i, min(n_ref, i + step)) for i in range(0, n_ref, step)]


def align_to_segments(
    timed: TimedFeatures,
    segments_intervals: np.ndarray,
    collapse: str | CollapseFn = "mean",
    *,
    epsilon: float = EPSILON,
) -> Aligned:
    """Collapse ``timed`` onto each reference interval ``[S, 2]`` (seconds); see the module docstring."""
    ref = np.asarray(segments_intervals, np.float64).reshape(-1, 2)
    sub, vals = timed.intervals, timed.values.astype(np.float64)
    n, d = len(ref), vals.shape[1]
    out = np.full((n, d), np.nan, np.float32)
    counts = np.zeros(n, np.int64)
    if len(sub) == 0 or n == 0:
        return Aligned(out, counts > 0, counts)
    for blk in _blocks(n, len(sub)):
        hit, length = _overlaps(ref[blk], sub, epsilon)
        cnt = hit.sum(1)
        counts[blk] = cnt
        ok = cnt > 0
        if collapse == "mean":
            res = (hit.astype(np.float64) @ vals) / np.maximum(cnt, 1)[:, None]
        elif collapse == "weighted_mean":
            res = (length @ vals) / np.maximum(length.sum(1), 1e-12)[:, None]
        elif collapse == "std":
            m = (hit @ vals) / np.maximum(cnt, 1)[:, None]
            res = np.sqrt(np.maximum((hit @ vals**2) / np.maximum(cnt, 1)[:, None] - m**2, 0.0))
        elif collapse in ("max", "min"):
            res = np.full((len(cnt), d), np.nan)
            for i in np.flatnonzero(ok):  # per row: reductions need the ragged subsets
                sel = vals[hit[i]]
                res[i] = sel.max(0) if collapse == "max" else sel.min(0)
        elif callable(collapse):
            res = np.full((len(cnt), d), np.nan)
            for i in np.flatnonzero(ok):
                r = ref[blk][i]
                pieces = np.stack([np.maximum(sub[hit[i], 0], r[0]), np.minimum(sub[hit[i], 1], r[1])], 1)
                res[i] = np.asarray(collapse(pieces, vals[hit[i]]), np.float64).reshape(-1)[:d]
        else:
            raise ValueError(f"unknown collapse {collapse!r}; use one of {COLLAPSES} or a callable")
        out[blk][ok] = res[ok]  # basic slice = view: writes into ``out``
    return Aligned(out, counts > 0, counts)


def clip_to_segments(timed: TimedFeatures, segments_intervals: np.ndarray, *, epsilon: float = EPSILON) -> list[TimedFeatures | None]:
    """The SDK's alignment *without* collapse: per reference interval, the clipped pieces (or None)."""
    ref = np.asarray(segments_intervals, np.float64).reshape(-1, 2)
    out: list[TimedFeatures | None] = []
    sub = timed.intervals
    for blk in _blocks(len(ref), len(sub)):
        hit, _ = _overlaps(ref[blk], sub, epsilon) if len(sub) else (np.zeros((blk.stop - blk.start, 0), bool), None)
        for i, r in enumerate(ref[blk]):
            idx = np.flatnonzero(hit[i])
            if len(idx) == 0:
                out.append(None)
                continue
            pieces = np.stack([np.maximum(sub[idx, 0], r[0]), np.minimum(sub[idx, 1], r[1])], 1)
            out.append(TimedFeatures(pieces, timed.values[idx], timed.dim_names))
    return out


def fallback_word_times(words: list[str], start: float, end: float) -> np.ndarray:
    """Word intervals when no timing file exists: the segment split in proportion to word length.

    Each word gets a share of ``[start, end]`` proportional to ``len(word) + 1`` (the +1 stands for the
    gap after it), so long words last longer, as in speech; contiguous, no overlap, covers the segment.
    """
    if not words:
        return np.zeros((0, 2))
    w = np.array([len(x) + 1.0 for x in words])
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(w) / w.sum()])
    return np.stack([edges[:-1], edges[1:]], 1)
