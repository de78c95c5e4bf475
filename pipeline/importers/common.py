"""Helpers shared by the importers: the segments table, input checks, and import notes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError, SplitError
from pipeline.segments import SPLITS, apply_aliases, validate_segments

log = logging.getLogger("affectflow.importers")

def require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found", path=p)
    return p


def read_segments_table(path: str | Path, *, split_column: str | None = "split") -> pd.DataFrame:
    """A segments table (CSV or Parquet) with the store's column names, validated.

    Required: ``segment_id``, ``video_id`` and (when ``split_column`` is given) the split column, whose
    values must be train/valid/test. ``segment_index`` defaults to the row's order within its video.
    """
    p = require_file(path, "segments table")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pq.read_table(p).to_pandas()
        else:
            df = pd.read_csv(p, keep_default_na=True, dtype={"segment_id": str, "video_id": str})
    except (pa.ArrowInvalid, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"not a readable CSV/Parquet segments table ({e})", path=p) from e
    df = apply_aliases(df)
    absent = [c for c in ("segment_id", "video_id") if c not in df.columns]
    if split_column is not None and split_column not in df.columns:
        absent.append(split_column)
    if absent:
        raise InputError(f"segments table lacks columns {absent} (has {list(df.columns)})", path=p)
    df["segment_id"] = df["segment_id"].astype(str)
    df["video_id"] = df["video_id"].astype(str)
    if split_column is not None:
        df["split"] = df[split_column]
        check_split_names(df["split"], p)
    df, names = validate_segments(df, p)
    if names is not None:
        df.attrs["label_names"] = names  # class names of `label`, indexed by label_class
    if "segment_index" not in df.columns:
        df["segment_index"] = df.groupby("video_id", sort=False).cumcount()
    return df


def check_split_names(split: pd.Series, origin: str | Path) -> None:
    values = split.astype(object).where(split.notna(), None)
    bad = sorted({"<empty>" if v is None else str(v) for v in values if v not in SPLITS})
    if bad:
        raise SplitError(f"unknown split names {bad}; allowed: {list(SPLITS)}", path=origin)


def check_finite(arr: np.ndarray, what: str, origin: str | Path, ids: list[str] | None = None) -> None:
    """NaN/inf is an input error, reported with the first offending row."""
    bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = f"segment {ids[first]!r}" if ids is not None else f"row {first}"
        raise InputError(f"{what}: NaN/inf values in {int(bad.sum())} rows (first: {where})", path=origin)


def note(notes: list[str], message: str) -> None:
    """Something the user should know about an import that is not an error (logged and kept in meta)."""
    log.warning(message)
    notes.append(message)
