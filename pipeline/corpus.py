"""A corpus: a folder of media (+ transcripts, word timings, labels, splits) turned into ``MediaItem``s.

Two layouts are accepted:

* **manifest** (``manifest.csv`` / ``.parquet`` in the folder, or the manifest file itself): one row per
  segment with ``path`` (relative to the folder; empty = transcript-only row, as MOSI's segments.csv),
  optional ``video_id``, ``segment_id``, ``segment_index``, ``start``/``end`` seconds (absent or empty =
  whole file), ``transcript`` (or a sidecar), ``words`` (a word-timing file, e.g. GRID's ``.align``),
  labels (``label`` class name, ``label_bin``, ``score``/``sentiment_score``) and ``split``;
* **folder** without a manifest: every media file found (recursively), its transcript from a sidecar
  ``<stem>.txt``, word timings from ``<stem>.align``, and utterance timestamps from ``<stem>.csv`` next
  to it or in a ``transcriptions/`` folder (MOUD's ``#starttime;#endtime;transcription;sentiment``).

Every path is resolved and must stay inside the corpus folder (symlinks included): a manifest cannot
make the pipeline read ``../../etc/passwd``. A row without media keeps its text; audio and visual are
then recorded as missing by the driver, never filled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError
from pipeline.extractors.base import MediaItem
from pipeline.segments import apply_aliases, read_text_file, validate_segments

MEDIA_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".wav", ".flac", ".mp3", ".m4a")
MANIFEST_NAMES = ("manifest.csv", "manifest.parquet", "corpus.csv", "corpus.parquet")
# GRID .align files count time in 1/25000 s (25 kHz sample index of the original audio).
ALIGN_UNITS_PER_S = 25000.0
ALIGN_SILENCE = {"sil", "sp"}
# Columns of MediaItem.segments: timing + text, and split/labels so every per-item result is self-contained.
ITEM_SEGMENT_COLUMNS = ("segment_id", "segment_index", "start", "end", "transcript", "split",
                        "label", "label_bin", "label_class", "score")


@dataclass
class Corpus:
    """The corpus folder, its items (one per media file or transcript-only video) and segment table."""

    root: Path
    items: list[MediaItem]
    segments: pd.DataFrame  # one row per segment: item_id, segment_id, ..., split, labels
    label_names: list[str] | None = None
    source: str = ""  # the manifest used, or "folder scan"

    def __len__(self) -> int:
        return len(self.items)


# ------------------------------------------------------------------------------------------- paths


def safe_path(root: Path, rel: str | Path, what: str = "path") -> Path:
    """``root / rel`` resolved; refuses absolute paths and anything that resolves outside ``root``."""
    rel = Path(str(rel).strip())
    if rel.is_absolute():
        raise InputError(f"{what} {str(rel)!r} is absolute; corpus paths must be relative to the corpus folder", path=root)
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()):
        raise InputError(f"{what} {str(rel)!r} escapes the corpus folder", path=root)
    return p


def item_id_of(root: Path, path: Path) -> str:
    """Stable, readable id: the path relative to the corpus, without its suffix."""
    return path.relative_to(root.resolve()).with_suffix("").as_posix()


# --------------------------------------------------------------------------------------- sidecars


def read_align(path: Path) -> pd.DataFrame:
    """GRID ``.align`` (``start end word`` in 1/25000 s): words with times in seconds, silences dropped."""
    rows = []
    for n, line in enumerate(read_text_file(path, "word timing file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise InputError(f"line {n}: expected 'start end word', got {line!r}", path=path)
        try:
            s, e = float(parts[0]) / ALIGN_UNITS_PER_S, float(parts[1]) / ALIGN_UNITS_PER_S
        except ValueError as err:
            raise InputError(f"line {n}: non-numeric time in {line!r}", path=path) from err
        if parts[2].lower() not in ALIGN_SILENCE:
            rows.append((parts[2], s, e))
    return pd.DataFrame(rows, columns=["word", "start", "end"])


def read_word_timings(path: Path) -> pd.DataFrame:
    """Word timings from ``.align`` or a CSV with ``word,start,end`` (seconds)."""
    if path.suffix.lower() == ".align":
        return read_align(path)
    df = _read_table(path, "word timing table")
    if not {"word", "start", "end"} <= set(df.columns):
        raise InputError(f"word timing table needs columns word,start,end (has {list(df.columns)})", path=path)
    df = df[["word", "start", "end"]].copy()
    if df["word"].isna().any():
        raise InputError(f"row {int(np.flatnonzero(df['word'].isna())[0]) + 1}, column 'word': empty", path=path)
    times, _ = validate_segments(df[["start", "end"]], path)
    return df.assign(word=df["word"].astype(str), start=times["start"], end=times["end"])


def read_utterance_csv(path: Path) -> pd.DataFrame:
    """MOUD-style utterance timestamps: ``"#starttime";"#endtime";"<text>";"sentimentAnnotations"``."""
    df = _read_table(path, "utterance table", sep=None, engine="python")
    cols = [c.lstrip("#").strip().lower() for c in df.columns]
    df.columns = cols
    if "starttime" not in cols or "endtime" not in cols:
        raise InputError(f"utterance table needs #starttime/#endtime columns (has {cols})", path=path)
    text_col = next((c for c in cols if c not in ("starttime", "endtime") and not c.startswith("sentiment")), None)
    out, _ = validate_segments(pd.DataFrame({"start": df["starttime"], "end": df["endtime"]}), path)
    out["transcript"] = df[text_col].fillna("").astype(str) if text_col else ""
    sent = next((c for c in cols if c.startswith("sentiment")), None)
    if sent is not None:
        out["score"] = df[sent]  # checked with the rest of the corpus's segments
    return out


def _read_table(path: Path, what: str, **kw) -> pd.DataFrame:
    """A CSV sidecar or manifest; any parse failure is a bad input, said in one line."""
    try:
        return pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, **kw)
    except Exception as e:  # noqa: BLE001 - pandas raises many types for a malformed file
        raise InputError(f"unreadable {what} ({type(e).__name__}: {e})", path=path) from e


def _sidecar(media: Path, suffix: str) -> Path | None:
    for cand in (media.with_suffix(suffix), media.parent / "transcriptions" / (media.stem + suffix)):
        if cand.is_file():
            return cand
    return None


# --------------------------------------------------------------------------------------- loading


def _read_manifest(path: Path) -> pd.DataFrame:
    df = _read_table(path, "manifest", dtype={"segment_id": str, "video_id": str, "path": str, "file": str},
                     keep_default_na=True)
    return apply_aliases(df)


def _folder_rows(root: Path) -> pd.DataFrame:
    media = sorted(p for p in root.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not media:
        raise InputError(f"no manifest ({', '.join(MANIFEST_NAMES)}) and no media files ({', '.join(MEDIA_SUFFIXES)})", path=root)
    rows = []
    for m in media:
        rel = m.relative_to(root).as_posix()
        utt = _sidecar(m, ".csv")
        if utt is not None:
            for _, r in read_utterance_csv(utt).iterrows():
                rows.append({"path": rel, **r.to_dict()})
            continue
        txt = _sidecar(m, ".txt")
        align = _sidecar(m, ".align")
        transcript = read_text_file(txt, "transcript").strip() if txt else None
        if transcript and transcript.upper().startswith("TEXT:"):  # LRS2 sidecars: "Text:  WORDS" + timings
            transcript = transcript.splitlines()[0].split(":", 1)[1].strip()
        rows.append({"path": rel, "transcript": transcript,
                     "words": align.relative_to(root).as_posix() if align else None})
    return pd.DataFrame(rows)


def _labels(df: pd.DataFrame) -> pd.DataFrame:
    if "score" in df.columns and "label_bin" not in df.columns:
        # Sentiment convention of MOSI/bc-LSTM: non-negative = positive.
        df["label_bin"] = np.where(df["score"].notna(), (df["score"] >= 0).astype(float), np.nan)
    for c in ("label", "label_bin", "label_class", "score"):
        if c not in df.columns:
            df[c] = np.nan
    return df


def load_corpus(path: str | Path, *, default_split: str = "train") -> Corpus:
    """Load a corpus folder (with or without a manifest) or a manifest file; see the module docstring."""
    p = Path(path)
    if not p.exists():
        raise InputError("corpus not found", path=p)
    if p.is_file():
        root, manifest = p.parent.resolve(), p
    else:
        root = p.resolve()
        manifest = next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
    df = _read_manifest(manifest) if manifest is not None else _folder_rows(root)
    if df.empty:
        raise InputError("corpus has no rows", path=manifest or root)
    return _build(root, df, default_split, source=str(manifest.name) if manifest is not None else "folder scan")


def _build(root: Path, df: pd.DataFrame, default_split: str, source: str) -> Corpus:
    df = df.reset_index(drop=True).copy()
    hint = "" if "path" in df.columns else f" (the table has no 'path' column; it has {list(df.columns)})"
    if "path" not in df.columns:
        df["path"] = None
    df["path"] = df["path"].where(df["path"].notna() & (df["path"].astype(str).str.strip() != ""), None)
    origin = root / source if source != "folder scan" else root
    resolved: dict[str, Path] = {}
    for rel in df["path"].dropna().unique():
        full = safe_path(root, rel, "media path")
        if not full.is_file():
            raise InputError(f"media file {rel!r} listed in the manifest does not exist", path=origin)
        resolved[rel] = full
    if "video_id" not in df.columns:
        df["video_id"] = None
    # item = one media file; transcript-only rows group by video_id (or are their own item).
    ids = []
    for i, r in df.iterrows():
        if pd.notna(r["video_id"]) and str(r["video_id"]).strip():
            ids.append(str(r["video_id"]))
        elif pd.notna(r["path"]):
            ids.append(item_id_of(root, resolved[r["path"]]))
        elif "segment_id" in df.columns and pd.notna(r.get("segment_id")):
            ids.append(str(r["segment_id"]))
        else:
            raise InputError(f"row {i + 1}: no path, video_id or segment_id: nothing identifies it{hint}", path=origin)
    df["video_id"] = ids
    if "split" not in df.columns:
        df["split"] = default_split
    df["split"] = df["split"].fillna(default_split).astype(str)
    df, names = validate_segments(df, origin)  # before any media is decoded
    if "segment_index" not in df.columns:
        df["segment_index"] = df.groupby("video_id", sort=False).cumcount()
    df["segment_index"] = df["segment_index"].astype(int)
    if "segment_id" not in df.columns:
        df["segment_id"] = None
    n_per = df.groupby("video_id", sort=False)["video_id"].transform("size")
    auto = [v if n == 1 else f"{v}_{k}" for v, n, k in zip(df["video_id"], n_per, df["segment_index"], strict=True)]
    df["segment_id"] = [str(s) if pd.notna(s) and str(s).strip() else a for s, a in zip(df["segment_id"], auto, strict=True)]
    dup = df["segment_id"][df["segment_id"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate segment ids, e.g. {list(dup.unique()[:3])}", path=origin)
    if "transcript" not in df.columns:
        df["transcript"] = None
    df["transcript"] = df["transcript"].astype(object).where(df["transcript"].notna(), None)
    df = _labels(df)
    items = [_item(root, vid, g, resolved, origin) for vid, g in df.groupby("video_id", sort=False)]
    keep = ["video_id", *ITEM_SEGMENT_COLUMNS, "path"]
    return Corpus(root, items, df[keep].reset_index(drop=True), names, source)


def _item(root: Path, vid: str, g: pd.DataFrame, resolved: dict[str, Path], origin: Path) -> MediaItem:
    paths = g["path"].dropna().unique()
    if len(paths) > 1:
        raise InputError(f"video {vid!r} spans several media files {list(paths)[:3]}", path=origin)
    if len(paths) and g["path"].isna().any():
        raise InputError(f"video {vid!r} mixes rows with and without a media path", path=origin)
    media = resolved[paths[0]] if len(paths) else None
    words = None
    if "words" in g.columns and g["words"].notna().any():
        words = read_word_timings(safe_path(root, g["words"].dropna().iloc[0], "word timing path"))
    seg = g[[c for c in ITEM_SEGMENT_COLUMNS if c in g.columns]].sort_values("segment_index")
    if len(seg) > 1 and (seg["start"].isna() | seg["end"].isna()).any() and media is not None:
        raise InputError(f"video {vid!r} has {len(seg)} segments but some lack start/end", path=origin)
    return MediaItem(item_id=vid, path=media, segments=seg.reset_index(drop=True), words=words)


def corpus_from_rows(root: str | Path, rows: Iterable[dict], *, default_split: str = "train") -> Corpus:
    """A corpus from in-memory manifest rows (same rules as a manifest file)."""
    return _build(Path(root).resolve(), pd.DataFrame(list(rows)), default_split, source="<rows>")


_WS = re.compile(r"\s+")


def clean_transcript(text: object) -> str:
    """Whitespace-normalised transcript; None/NaN (no transcript) -> ""."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return _WS.sub(" ", str(text)).strip()
