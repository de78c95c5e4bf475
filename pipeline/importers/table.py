"""Generic table import: a segments table + per-modality arrays keyed by ``segment_id``.

Segments: CSV or Parquet with ``segment_id, video_id[, segment_index, start, end, transcript,
label_bin|label, label_class, score|sentiment_score], split``. Features, one or more files:

* ``.npz`` (read with ``allow_pickle=False``): a ``segment_id`` array plus one 2-D numeric array
  ``[N, D]`` per modality; other 1-D arrays (labels, splits, ...) are ignored and reported;
* ``.parquet``: a ``segment_id`` column plus one column per modality holding fixed-size lists,
  fixed-shape tensors or lists of floats (one ``[D]`` vector per row).

A segment with no row in a features file gets a null (missing) cell for that modality; a feature row
whose ``segment_id`` is not in the segments table is an error.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.importers.common import check_finite, note, read_segments_table, require_file
from pipeline.provenance import StageConfig, hash_file, hash_json
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set

# The embedded default: bc-LSTM raw features of CMU-MOSI (MIT, Poria et al. 2017), see data/README.md.
EMBEDDED_DIR = Path(__file__).resolve().parents[2] / "data" / "mosi"
EMBEDDED_SEGMENTS = "segments.csv"
EMBEDDED_FEATURES = "bclstm_raw_features.dev.npz"
EMBEDDED_DESCRIPTIONS = {
    "text": "text-CNN utterance features (bc-LSTM release)",
    "audio": "openSMILE utterance functionals (bc-LSTM release)",
    "video": "3D-CNN utterance features (bc-LSTM release)",
}


class TableImportConfig(StageConfig):
    feature_set: str = "table"
    split_column: str = "split"
    modalities: list[str] | None = None  # None = every 2-D array / vector column found
    segments_file: str
    features_files: list[str]


def _read_npz(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"not a readable .npz without pickled objects ({e})", path=path) from e
    with z:
        if "segment_id" not in z.files:
            raise InputError(f"wrong keys: no 'segment_id' array (has {z.files})", path=path)
        try:
            arrays = {k: z[k] for k in z.files}
        except ValueError as e:  # object arrays need pickle: refused
            raise InputError(f"contains an object array that would need pickle ({e})", path=path) from e
    ids = arrays.pop("segment_id").astype(str)
    mods = {k: v for k, v in arrays.items() if v.ndim == 2 and np.issubdtype(v.dtype, np.number)}
    ignored = sorted(set(arrays) - set(mods))
    return ids, mods, ignored


def _read_parquet(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    try:
        t = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", path=path) from e
    if "segment_id" not in t.column_names:
        raise InputError(f"wrong keys: no 'segment_id' column (has {t.column_names})", path=path)
    ids = np.asarray(t.column("segment_id").to_pylist(), dtype=str)
    mods, ignored = {}, []
    for name in t.column_names:
        if name == "segment_id":
            continue
        col = t.column(name).combine_chunks()
        if isinstance(col, pa.ExtensionArray):
            col = col.storage
        if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)) or col.null_count:
            ignored.append(name)
            continue
        lengths = set(pa.compute.list_value_length(col).to_pylist())
        if len(lengths) != 1:
            raise InputError(f"column {name!r}: rows have different lengths {sorted(lengths)[:5]}", path=path)
        mods[name] = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)
    return ids, mods, ignored


def read_feature_arrays(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """(segment ids, {modality: [N, D] array}, names of ignored keys) from an npz or Parquet file."""
    p = require_file(path, "features file")
    ids, mods, ignored = _read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else _read_npz(p)
    if not mods:
        raise InputError(f"wrong keys: no [N, D] numeric feature arrays found (ignored: {ignored})", path=p)
    for name, arr in mods.items():
        if len(arr) != len(ids):
            raise InputError(
                f"mismatched lengths between modalities: {name!r} has {len(arr)} rows, segment_id has {len(ids)}",
                path=p,
            )
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise InputError(f"duplicate segment ids ({len(dup)}), e.g. {list(dup.unique()[:3])}", path=p)
    return ids, mods, ignored


def build_table(
    segments_path: str | Path,
    features_paths: str | Path | Sequence[str | Path],
    *,
    dataset: str,
    feature_set: str = "table",
    split_column: str = "split",
    modalities: Sequence[str] | None = None,
    descriptions: dict[str, str] | None = None,
) -> FeatureSet:
    """Read, join and validate a segments table and feature files into a :class:`FeatureSet`."""
    if isinstance(features_paths, str | Path):
        features_paths = [features_paths]
    seg = read_segments_table(segments_path, split_column=split_column)
    class_names = seg.attrs.get("label_names")  # from a `label` column of class names
    notes: list[str] = []
    index = pd.Index(seg["segment_id"])
    features: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    origins: dict[str, Path] = {}
    for fp in features_paths:
        ids, mods, ignored = read_feature_arrays(fp)
        if ignored and modalities is None:
            note(notes, f"{Path(fp).name}: ignored non-feature arrays {ignored}")
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            unknown = ids[pos < 0]
            raise InputError(
                f"{len(unknown)} feature rows have segment ids not in the segments table, e.g. {list(unknown[:3])}",
                path=fp,
            )
        for name, arr in mods.items():
            if modalities is not None and name not in modalities:
                continue
            if name in features:
                raise InputError(f"modality {name!r} also comes from {origins[name]}", path=fp)
            check_finite(arr, f"modality {name!r}", fp, list(ids))
            full = np.zeros((len(seg), arr.shape[1]), np.float32)
            full[pos] = arr
            absent = np.ones(len(seg), bool)
            absent[pos] = False
            if absent.any():
                note(notes, f"modality {name!r}: {int(absent.sum())} segments have no features (stored as missing)")
            features[name], missing[name], origins[name] = full, absent, Path(fp)
    if modalities is not None:
        lost = [m for m in modalities if m not in features]
        if lost:
            raise InputError(f"modalities {lost} not found in {[str(p) for p in features_paths]}", path=segments_path)
    cfg = TableImportConfig(
        feature_set=feature_set, split_column=split_column,
        modalities=None if modalities is None else list(modalities),
        segments_file=Path(segments_path).name, features_files=[Path(p).name for p in features_paths],
    )
    descriptions = descriptions or {}
    specs = {
        m: ModalitySpec(kind="vector", dim=int(a.shape[1]), description=descriptions.get(m, f"imported from {origins[m].name}"))
        for m, a in features.items()
    }
    has_bin = "label_bin" in seg.columns and seg["label_bin"].notna().any()
    meta = make_meta(
        dataset=dataset, feature_set=feature_set, modalities=specs,
        producer=Producer.of("importer", "table", cfg.model_dump(mode="json")),
        source_hash=hash_json([hash_file(segments_path), *(hash_file(p) for p in features_paths)]),
        label_names=class_names or (["negative", "positive"] if has_bin else None),
        extra={"notes": notes},
    )
    keep = [c for c in ("video_id", "segment_id", "segment_index", "start", "end", "split",
                        "label_bin", "label_class", "score", "transcript") if c in seg.columns]
    return FeatureSet(meta, seg[keep].reset_index(drop=True), features, missing)


def import_table(
    segments_path: str | Path,
    features_paths: str | Path | Sequence[str | Path],
    *,
    store: str | Path,
    dataset: str,
    feature_set: str = "table",
    split_column: str = "split",
    modalities: Sequence[str] | None = None,
) -> Path:
    """Import a segments table + feature arrays into ``STORE/<dataset>/<feature_set>.parquet``."""
    fs = build_table(
        segments_path, features_paths, dataset=dataset, feature_set=feature_set,
        split_column=split_column, modalities=modalities,
    )
    return write_feature_set(store, fs, origin=str(segments_path))


def import_embedded_default(store: str | Path, *, split_column: str = "split") -> list[Path]:
    """Import the dataset shipped in ``data/mosi/`` (dataset ``mosi``, feature set ``bclstm-raw``).

    Raw bc-LSTM utterance features (text 100-d, audio 73-d, video 100-d), honest-mosi split from the
    ``split`` column (1447 train / 240 valid). Unscaled: standardise on train.
    """
    seg = require_file(EMBEDDED_DIR / EMBEDDED_SEGMENTS, "embedded segments table (data/mosi)")
    feats = require_file(EMBEDDED_DIR / EMBEDDED_FEATURES, "embedded features (data/mosi)")
    fs = build_table(
        seg, feats, dataset="mosi", feature_set="bclstm-raw", split_column=split_column,
        modalities=("text", "audio", "video"), descriptions=EMBEDDED_DESCRIPTIONS,
    )
    return [write_feature_set(store, fs, origin=str(seg))]
