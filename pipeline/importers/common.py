"""Helpers shared by the importers: the segments table, input checks, and import notes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError, SplitError
from pipeline.store import SPLITS

log = logging.getLogger("affectflow.importers")

# Column aliases accepted in a segments table -> the store's column names.
SEGMENT_ALIASES = {
    "sentiment_score": "score",
    "label": "label_bin",
    "utterance_id": "segment_id",
    "video": "video_id",
}
SEGMENT_COLUMNS = (
    "segment_id", "video_id", "segment_index", "start", "end", "transcript",
    "label_bin", "label_class", "score", "split",
)


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
    df = df.rename(columns={k: v for k, v in SEGMENT_ALIASES.items() if k in df.columns and v not in df.columns})
    absent = [c for c in ("segment_id", "video_id") if c not in df.columns]
    if split_column is not None and split_column not in df.columns:
        absent.append(split_column)
    if absent:
        raise InputError(f"segments table lacks columns {absent} (has {list(df.columns)})", path=p)
    df["segment_id"] = df["segment_id"].astype(str)
    df["video_id"] = df["video_id"].astype(str)
    dup = df["segment_id"][df["segment_id"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate segment ids ({len(dup)}), e.g. {list(dup.unique()[:3])}", path=p)
    if split_column is not None:
        df["split"] = df[split_column]
        check_split_names(df["split"], p)
    if "segment_index" not in df.columns:
        df["segment_index"] = df.groupby("video_id", sort=False).cumcount()
    for col in ("segment_index", "label_bin", "label_class"):
        if col in df.columns:
            _check_integer(df, col, p)
    if "label_bin" in df.columns and not df["label_bin"].dropna().isin([0, 1]).all():
        raise InputError(f"label_bin has values other than 0/1: {sorted(set(df['label_bin'].dropna()) - {0, 1})[:5]}", path=p)
    for col in ("start", "end", "score"):
        if col in df.columns:
            try:
                df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
            except (ValueError, TypeError) as e:
                raise InputError(f"column {col!r} is not numeric ({e})", path=p) from e
            vals = df[col].to_numpy(float)
            if np.isinf(vals).any():
                raise InputError(f"column {col!r} has infinite values", path=p)
    return df


def _check_integer(df: pd.DataFrame, col: str, origin: Path) -> None:
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = (vals.isna() & df[col].notna()) | (vals.notna() & (vals != vals.round()))
    if col == "segment_index":
        bad |= vals.isna()
    if bad.any():
        raise InputError(f"column {col!r} must hold integers; row {int(np.flatnonzero(bad)[0])} has {df[col][bad].iloc[0]!r}", path=origin)
    df[col] = vals.astype("Int64")


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
