"""The one segment schema: what a segment row is, under which names it may arrive, and what it may hold.

Every reader of segments (the corpus loader, the table/pickle/.csd importers) renames its columns with
:data:`ALIASES` and checks them with :func:`validate_segments` at load time, before any media is decoded,
in the spirit of lhotse's ``SupervisionSegment``. The columns and their Arrow types are
:data:`SEGMENT_FIELDS`; a bad value is refused with one line naming the file, the row and the column:

* ``segment_id`` unique (when present); ``segment_index`` an integer;
* ``start``/``end`` in seconds: both empty (= the whole file) or both finite with ``0 <= start < end``;
  a value that is not a number is refused, never read as "whole file";
* ``label`` a class name (one meaning everywhere; the binary label is ``label_bin``), ``label_bin`` in
  {0, 1}, ``label_class`` an integer >= 0, ``score`` a finite number; ``split`` one of train/valid/test.

An end beyond the media can only be known once the file is probed: the extraction driver quarantines
that segment with its reason (``pipeline.extract``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import InputError

SPLITS = ("train", "valid", "test")
# Column aliases seen in published segment tables -> the schema's names (one table for every reader).
ALIASES = {
    "sentiment_score": "score", "sentiment": "score", "utterance_id": "segment_id", "video": "video_id",
    "emotion": "label", "file": "path",
}
SEGMENT_FIELDS = pa.schema([
    ("video_id", pa.string()),
    ("segment_id", pa.string()),
    ("segment_index", pa.int32()),
    ("start", pa.float64()),
    ("end", pa.float64()),
    ("transcript", pa.string()),
    ("split", pa.string()),
    ("label", pa.string()),  # class name
    ("label_bin", pa.int8()),  # 0/1
    ("label_class", pa.int16()),  # index into the feature set's label_names
    ("score", pa.float32()),  # continuous sentiment
])
BINARY_LABELS = (0, 1)


def apply_aliases(df: pd.DataFrame) -> pd.DataFrame:
    """Rename aliased columns to the schema's names (a column already named right wins)."""
    return df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns and v not in df.columns})


def _refuse(origin: str | Path, row: int, column: str, problem: str, value: object) -> InputError:
    # Rows are counted from 1 over the data rows (the header is not a row).
    value = value.item() if isinstance(value, np.generic) else value
    return InputError(f"row {row + 1}, column {column!r}: {problem} (got {value!r})", path=origin)


def _numbers(df: pd.DataFrame, column: str, origin: str | Path) -> pd.Series:
    """The column as float64; an empty cell is NaN, anything else that is not a number is refused."""
    raw = df[column]
    vals = pd.to_numeric(raw, errors="coerce").astype("float64")
    blank = raw.map(lambda v: isinstance(v, str) and not v.strip())
    given = raw.notna() & ~blank
    bad = given & vals.isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _refuse(origin, i, column, "not a number", raw.iloc[i])
    inf = np.isinf(vals.to_numpy())
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise _refuse(origin, i, column, "not finite", raw.iloc[i])
    return vals


def _integers(df: pd.DataFrame, column: str, origin: str | Path, *, required: bool, allowed=None) -> pd.Series:
    vals = _numbers(df, column, origin)
    bad = vals.notna() & (vals != vals.round())
    if required:
        bad |= vals.isna()
    if allowed is not None:
        bad |= vals.notna() & ~vals.isin(allowed)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = f"must be one of {list(allowed)}" if allowed is not None else "must be an integer"
        raise _refuse(origin, i, column, what if not (required and pd.isna(vals.iloc[i])) else "empty", df[column].iloc[i])
    return vals.astype("Int64")


def _times(df: pd.DataFrame, origin: str | Path) -> None:
    for c in ("start", "end"):
        df[c] = _numbers(df, c, origin) if c in df.columns else np.nan
    start, end = df["start"].to_numpy(), df["end"].to_numpy()
    half = np.isnan(start) != np.isnan(end)
    if half.any():
        i = int(np.flatnonzero(half)[0])
        col = "end" if np.isnan(end[i]) else "start"
        raise _refuse(origin, i, col, "empty while the other bound is given (both empty = whole file)", df[col].iloc[i])
    neg = start < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise _refuse(origin, i, "start", "negative", start[i])
    order = ~np.isnan(start) & (end <= start)
    if order.any():
        i = int(np.flatnonzero(order)[0])
        raise _refuse(origin, i, "end", f"not after start {start[i]!r}", end[i])


def validate_segments(df: pd.DataFrame, origin: str | Path) -> tuple[pd.DataFrame, list[str] | None]:
    """Aliases applied, every schema column present in ``df`` checked and typed; returns the table and the
    class names (sorted) when a ``label`` column gives them, ``label_class`` then indexing them."""
    df = apply_aliases(df.reset_index(drop=True).copy())
    if "segment_id" in df.columns and df["segment_id"].notna().all():
        ids = df["segment_id"].astype(str)
        dup = ids.duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise _refuse(origin, i, "segment_id", "duplicate segment id", ids.iloc[i])
    _times(df, origin)
    if "segment_index" in df.columns:
        df["segment_index"] = _integers(df, "segment_index", origin, required=True)
    if "label_bin" in df.columns:
        df["label_bin"] = _integers(df, "label_bin", origin, required=False, allowed=BINARY_LABELS)
    if "label_class" in df.columns:
        df["label_class"] = _integers(df, "label_class", origin, required=False)
        neg = df["label_class"].fillna(0) < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise _refuse(origin, i, "label_class", "negative", df["label_class"].iloc[i])
    if "score" in df.columns:
        df["score"] = _numbers(df, "score", origin)
    if "split" in df.columns:
        bad = ~df["split"].isin(SPLITS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _refuse(origin, i, "split", f"must be one of {list(SPLITS)}", df["split"].iloc[i])
    names = None
    if "label" in df.columns and df["label"].notna().any():
        names = sorted(df["label"].dropna().astype(str).unique())
        df["label_class"] = df["label"].map({n: i for i, n in enumerate(names)}).astype("Int64")
    return df, names


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file (transcript, word timings), refused in one line when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not UTF-8 text (byte {e.start}: {e.reason})", path=path) from e
