"""The Parquet feature store: one file per (dataset, feature set), one row per segment.

Layout::

    STORE/<dataset>/<feature_set>.parquet

Every file is self-contained and readable as-is by pyarrow, pandas and duckdb:

* key columns ``dataset, video_id, segment_id, segment_index, start, end, split`` (start/end nullable),
* label columns ``label_bin`` (int8), ``label_class`` (int16), ``score`` (float32), all nullable,
  plus an optional ``transcript``,
* one column per modality: ``fixed_shape_tensor<float32>[D]`` for utterance-level vectors, or
  ``list<fixed_size_list<float32>[D]>`` for variable-length ``[T, D]`` sequences. A null cell means
  the modality is *missing* for that segment (never zeros that look like data),
* the Parquet schema metadata key ``affectflow`` holds :class:`FeatureSetMeta` as JSON: producer and
  its config (+ hash), library versions, the content hash of the source, modalities and dimension names.

Writes go to a hidden temp file in the same directory and are renamed into place, so a crash never
leaves a file a reader would accept (readers also skip names starting with ``.``). Checks on every file:

* every data page carries a CRC (Parquet page checksums), verified by every read, and the metadata
  JSON carries its SHA-256 under ``affectflow.sha256``: a flipped byte is refused with the file's name;
* one writer per dataset (:func:`dataset_writer`, ``pipeline.writers``: a ``flock`` on
  ``<dataset>/.lock``, released by the kernel even on kill -9); the writer first removes the temp files
  a killed writer left, and checks write permission and free space before any work;
* :func:`write_feature_set_chunks` writes one row group per chunk (one extracted item), so memory is
  bounded by a chunk however large the feature set.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from pipeline.atomic import atomic_path
from pipeline.errors import InputError, SplitError, StoreError
from pipeline.provenance import hash_json, library_versions
from pipeline.segments import SEGMENT_FIELDS, SPLITS
from pipeline.writers import folder_writer

SCHEMA_VERSION = 1
META_KEY = b"affectflow"
META_HASH_KEY = b"affectflow.sha256"
PARQUET_OPTIONS = {"compression": "zstd", "write_page_checksum": True}
KEY_COLUMNS = ("dataset", "video_id", "segment_id", "segment_index", "start", "end", "split")
LABEL_COLUMNS = ("label_bin", "label_class", "score")
OPTIONAL_COLUMNS = ("transcript",)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# The stored segment columns, typed by the one segment schema (pipeline.segments) plus the dataset name.
SEGMENT_SCHEMA = pa.schema([pa.field("dataset", pa.string()),
                            *(SEGMENT_FIELDS.field(c) for c in (*KEY_COLUMNS[1:], *LABEL_COLUMNS))])


class ModalitySpec(BaseModel):
    """One feature column: ``vector`` = one [D] vector per segment, ``sequence`` = [T, D] per segment."""

    kind: Literal["vector", "sequence"]
    dim: int
    dim_names: list[str] | None = None
    description: str = ""


class Producer(BaseModel):
    """Who wrote the feature set: an importer, an extractor, a model (e.g. UCLN) or an export."""

    kind: Literal["importer", "extractor", "model", "derived"]
    name: str
    config: dict
    config_hash: str

    @classmethod
    def of(cls, kind: str, name: str, config: dict) -> Producer:
        return cls(kind=kind, name=name, config=config, config_hash=hash_json(config))


class FeatureSetMeta(BaseModel):
    schema_version: int = SCHEMA_VERSION
    dataset: str
    feature_set: str
    modalities: dict[str, ModalitySpec]
    producer: Producer
    source_hash: str
    versions: dict[str, str]
    label_names: list[str] | None = None  # names of label_class values, if the dataset has classes
    lineage: list[str] = []  # feature sets (dataset/name@source_hash) this one was computed from
    created_at: str = ""
    n_rows: int = 0
    extra: dict = {}


@dataclass
class FeatureSet:
    """In-memory feature set: a segment table plus one array (or list of arrays) per modality.

    ``features[m]`` is a float32 array ``[N, D]`` for vector modalities (rows with a missing modality
    are listed in ``missing[m]``), or a list of ``[T_i, D]`` arrays / ``None`` for sequences.
    """

    meta: FeatureSetMeta
    segments: pd.DataFrame
    features: dict[str, np.ndarray | list[np.ndarray | None]]
    missing: dict[str, np.ndarray] = field(default_factory=dict)  # bool [N] per modality

    def __len__(self) -> int:
        return len(self.segments)

    def split(self, name: str) -> FeatureSet:
        """Rows of one split; a split that is absent is an error, never an empty result."""
        mask = (self.segments["split"] == name).to_numpy()
        if not mask.any():
            have = sorted(self.segments["split"].dropna().unique())
            raise SplitError(
                f"split {name!r} is absent from {self.meta.dataset}/{self.meta.feature_set} (has: {have})"
            )
        return self.take(np.flatnonzero(mask))

    def take(self, idx: np.ndarray) -> FeatureSet:
        feats: dict[str, np.ndarray | list[np.ndarray | None]] = {}
        for m, arr in self.features.items():
            feats[m] = arr[idx] if isinstance(arr, np.ndarray) else [arr[i] for i in idx]
        missing = {m: v[idx] for m, v in self.missing.items()}
        meta = self.meta.model_copy(update={"n_rows": len(idx)})
        return FeatureSet(meta, self.segments.iloc[idx].reset_index(drop=True), feats, missing)


def validate_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise InputError(f"invalid {what} name {name!r}: use letters, digits, '_', '.', '+', '-'")
    return name


def feature_set_path(store: str | Path, dataset: str, feature_set: str) -> Path:
    validate_name(dataset, "dataset")
    validate_name(feature_set, "feature set")
    return Path(store) / dataset / f"{feature_set}.parquet"


def make_meta(
    *,
    dataset: str,
    feature_set: str,
    modalities: dict[str, ModalitySpec],
    producer: Producer,
    source_hash: str,
    label_names: Sequence[str] | None = None,
    lineage: Sequence[str] = (),
    extra: dict | None = None,
) -> FeatureSetMeta:
    return FeatureSetMeta(
        dataset=validate_name(dataset, "dataset"),
        feature_set=validate_name(feature_set, "feature set"),
        modalities=modalities,
        producer=producer,
        source_hash=source_hash,
        versions=library_versions(),
        label_names=list(label_names) if label_names else None,
        lineage=list(lineage),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        extra=extra or {},
    )


# --------------------------------------------------------------------------------------------- write


def _check_segments(segments: pd.DataFrame, origin: str) -> None:
    missing_cols = [c for c in ("video_id", "segment_id", "split") if c not in segments.columns]
    if missing_cols:
        raise InputError(f"segment table lacks columns {missing_cols}", path=origin)
    dup = segments["segment_id"][segments["segment_id"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate segment ids, e.g. {list(dup.unique()[:3])}", path=origin)
    bad = sorted(set(segments["split"].dropna()) - set(SPLITS))
    if bad or segments["split"].isna().any():
        raise InputError(f"unknown split names {bad or ['<null>']}; allowed: {list(SPLITS)}", path=origin)


def _vector_column(arr: np.ndarray, missing: np.ndarray | None, dim: int, origin: str, m: str) -> pa.Array:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"modality {m!r}: expected [N, {dim}] array, got {arr.shape}", path=origin)
    present = np.ones(len(arr), bool) if missing is None else ~missing
    if not np.isfinite(arr[present]).all():
        bad = np.flatnonzero(present & ~np.isfinite(arr).all(axis=1))
        raise InputError(f"modality {m!r}: NaN/inf values in {len(bad)} rows (first row {bad[0]})", path=origin)
    tensor_type = pa.fixed_shape_tensor(pa.float32(), [dim])
    flat = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), dim)
    if missing is not None and missing.any():
        flat = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), dim, mask=pa.array(missing))
    return pa.ExtensionArray.from_storage(tensor_type, flat)


def _sequence_column(seqs: Sequence[np.ndarray | None], dim: int, origin: str, m: str) -> pa.Array:
    offsets, chunks, nulls = [0], [], []
    for i, s in enumerate(seqs):
        if s is None:
            nulls.append(True)
            offsets.append(offsets[-1])
            continue
        s = np.asarray(s, dtype=np.float32)
        if s.ndim != 2 or s.shape[1] != dim:
            raise InputError(f"modality {m!r} row {i}: expected [T, {dim}], got {s.shape}", path=origin)
        if not np.isfinite(s).all():
            raise InputError(f"modality {m!r} row {i}: NaN/inf values", path=origin)
        nulls.append(False)
        chunks.append(s.reshape(-1))
        offsets.append(offsets[-1] + len(s))
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), inner, mask=pa.array(nulls) if any(nulls) else None
    )


def to_table(fs: FeatureSet, origin: str = "<memory>") -> pa.Table:
    """Arrow table + schema metadata for a feature set; validates everything a reader will check."""
    seg = fs.segments.reset_index(drop=True).copy()
    seg["dataset"] = fs.meta.dataset
    for col in ("segment_index", "start", "end", *LABEL_COLUMNS):
        if col not in seg.columns:
            seg[col] = None
    _check_segments(seg, origin)
    n = len(seg)
    columns: dict[str, pa.Array] = {}
    for f in SEGMENT_SCHEMA:
        columns[f.name] = pa.array(seg[f.name].astype(object).where(seg[f.name].notna(), None), f.type)
    if "transcript" in seg.columns:
        columns["transcript"] = pa.array(seg["transcript"].astype(object).where(seg["transcript"].notna(), None), pa.string())
    if set(fs.features) != set(fs.meta.modalities):
        raise InputError(f"features {sorted(fs.features)} != metadata modalities {sorted(fs.meta.modalities)}", path=origin)
    for m, spec in fs.meta.modalities.items():
        data = fs.features[m]
        if len(data) != n:
            raise InputError(f"modality {m!r} has {len(data)} rows but the segment table has {n}", path=origin)
        if spec.kind == "vector":
            columns[m] = _vector_column(data, fs.missing.get(m), spec.dim, origin, m)
        else:
            columns[m] = _sequence_column(data, spec.dim, origin, m)
    return pa.table(columns).replace_schema_metadata(meta_metadata(fs.meta.model_copy(update={"n_rows": n})))


def meta_metadata(meta: FeatureSetMeta) -> dict[bytes, bytes]:
    """Schema metadata of a feature set: the meta JSON and its SHA-256 (checked by :func:`read_meta`)."""
    raw = meta.model_dump_json().encode()
    return {META_KEY: raw, META_HASH_KEY: hashlib.sha256(raw).hexdigest().encode()}


def write_atomic(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file atomically (hidden temp file in the same directory, fsync, rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
    return path


def write_feature_set(store: str | Path, fs: FeatureSet, origin: str = "<memory>") -> Path:
    """Validate and atomically write a feature set; returns the file path."""
    size = sum(a.nbytes if isinstance(a, np.ndarray) else sum(x.nbytes for x in a if x is not None)
               for a in fs.features.values())  # uncompressed: an upper bound of the file's size
    return write_feature_set_chunks(store, fs.meta.model_copy(update={"n_rows": len(fs)}), [fs], origin, size)


def write_feature_set_chunks(store: str | Path, meta: FeatureSetMeta, chunks: Iterable[FeatureSet],
                             origin: str = "<memory>", need_bytes: int = 0) -> Path:
    """Write a feature set from chunks (each a FeatureSet with ``meta``'s modalities), one row group per
    chunk, under the dataset's writer lock; the file appears (renamed into place) only once complete."""
    path = feature_set_path(store, meta.dataset, meta.feature_set)
    written, schema_md = 0, meta_metadata(meta)
    with dataset_writer(store, meta.dataset, need_bytes):
        try:
            with atomic_path(path) as tmp:
                writer: pq.ParquetWriter | None = None
                try:
                    for chunk in chunks:
                        table = to_table(chunk, origin).replace_schema_metadata(schema_md)
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, table.schema, **PARQUET_OPTIONS)
                        writer.write_table(table)
                        written += table.num_rows
                finally:
                    if writer is not None:
                        writer.close()
                if writer is None or written != meta.n_rows:
                    raise StoreError(f"{written} rows written, the metadata says {meta.n_rows}", path=path)
        except OSError as e:  # a disk that fills up during the write: one line, the temp file is gone
            raise StoreError(f"write failed ({e.strerror or e}); nothing was replaced", path=path) from e
    return path


def dataset_writer(store: str | Path, dataset: str, need_bytes: int = 0):  # noqa: ANN201 - context manager
    """Exclusive right to write ``store/dataset`` (see ``pipeline.writers.folder_writer``)."""
    return folder_writer(Path(store) / validate_name(dataset, "dataset"), need_bytes)


# ---------------------------------------------------------------------------------------------- read


def read_meta(path: str | Path) -> FeatureSetMeta:
    path = Path(path)
    if not path.is_file():
        raise StoreError("feature set file not found", path=path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise StoreError(f"not a readable Parquet file ({e})", path=path) from e
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise StoreError("no affectflow metadata: not written by affectflow, or stripped", path=path)
    digest = (schema.metadata or {}).get(META_HASH_KEY)
    if digest is None or hashlib.sha256(raw).hexdigest().encode() != digest:
        raise StoreError("affectflow metadata does not match its checksum (corrupted file)", path=path)
    try:
        meta = FeatureSetMeta.model_validate_json(raw)
    except ValidationError as e:
        raise StoreError(f"affectflow metadata is invalid: {e.errors()[0]['msg']}", path=path) from e
    if meta.schema_version != SCHEMA_VERSION:
        raise StoreError(f"schema version {meta.schema_version}, this affectflow reads {SCHEMA_VERSION}", path=path)
    if meta.producer.config_hash != hash_json(meta.producer.config):
        raise StoreError("producer config does not match its recorded config hash", path=path)
    for m, spec in meta.modalities.items():
        if m not in schema.names:
            raise StoreError(f"metadata lists modality {m!r} but the file has no such column", path=path)
        t = schema.field(m).type
        if spec.kind == "vector":
            ok = isinstance(t, pa.FixedShapeTensorType) and list(t.shape) == [spec.dim]
        else:
            ok = pa.types.is_list(t) and pa.types.is_fixed_size_list(t.value_type) and t.value_type.list_size == spec.dim
        if not ok:
            raise StoreError(f"column {m!r} has type {t}, metadata says {spec.kind} of dim {spec.dim}", path=path)
        if spec.dim_names is not None and len(spec.dim_names) != spec.dim:
            raise StoreError(f"modality {m!r}: {len(spec.dim_names)} dim names for dim {spec.dim}", path=path)
    absent = [c for c in (*KEY_COLUMNS, *LABEL_COLUMNS) if c not in schema.names]
    if absent:
        raise StoreError(f"missing columns {absent}", path=path)
    return meta


def read_verified(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The file's table with every page's CRC checked: a flipped byte is refused with the file's name."""
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"corrupted data, refused ({e})", path=path) from e


def _verified_labels(path: Path) -> pd.DataFrame:
    """Split and label columns, every page of every column checked on the way (one row group at a time)."""
    cols = ["split", "label_bin", "label_class", "score"]
    try:
        f = pq.ParquetFile(path, page_checksum_verification=True)
        parts = [f.read_row_group(i).select(cols) for i in range(f.num_row_groups)]
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"corrupted data, refused ({e})", path=path) from e
    return pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=cols)


def _vector_to_numpy(col: pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] float32 plus a bool [N] 'missing' flag; missing rows are zero-filled *and flagged*."""
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in col.chunks]
    storage = pa.concat_arrays(chunks) if chunks else pa.array([], pa.list_(pa.float32(), dim))
    missing = storage.is_null().to_numpy(zero_copy_only=False)
    out = np.zeros((len(storage), dim), np.float32)
    if len(storage) and not missing.any():
        out[:] = storage.flatten().to_numpy().reshape(-1, dim)
    elif (~missing).any():
        out[~missing] = storage.filter(pa.array(~missing)).flatten().to_numpy().reshape(-1, dim)
    return out, missing


def _sequence_to_list(col: pa.ChunkedArray, dim: int) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for chunk in col.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        for i in range(len(chunk)):
            out.append(values[offsets[i] : offsets[i + 1]].astype(np.float32) if valid[i] else None)
    return out


def read_feature_set(
    store: str | Path,
    dataset: str,
    feature_set: str,
    modalities: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
) -> FeatureSet:
    """Read (a subset of) a feature set, refusing files whose metadata is missing or inconsistent."""
    path = feature_set_path(store, dataset, feature_set)
    if not path.is_file():
        have = [p.stem for p in sorted((Path(store) / dataset).glob("[!.]*.parquet"))]
        raise StoreError(f"no feature set {feature_set!r} for dataset {dataset!r} (has: {have})", path=path)
    meta = read_meta(path)
    wanted = list(meta.modalities) if modalities is None else list(modalities)
    unknown = [m for m in wanted if m not in meta.modalities]
    if unknown:
        raise StoreError(f"modalities {unknown} not in feature set (has {list(meta.modalities)})", path=path)
    table = read_verified(path)
    if table.num_rows != meta.n_rows:
        raise StoreError(f"{table.num_rows} rows on disk, metadata says {meta.n_rows}", path=path)
    if splits is not None:
        splits = list(splits)
        present = set(table.column("split").to_pylist())
        absent = [s for s in splits if s not in present]
        if absent:
            raise SplitError(f"splits {absent} absent from {dataset}/{feature_set} (has {sorted(present)})", path=path)
        table = table.filter(pa.compute.is_in(table.column("split"), pa.array(splits)))
    seg_cols = [c for c in (*KEY_COLUMNS, *LABEL_COLUMNS, *OPTIONAL_COLUMNS) if c in table.column_names]
    segments = table.select(seg_cols).to_pandas()
    features: dict[str, np.ndarray | list[np.ndarray | None]] = {}
    missing: dict[str, np.ndarray] = {}
    for m in wanted:
        spec = meta.modalities[m]
        if spec.kind == "vector":
            features[m], missing[m] = _vector_to_numpy(table.column(m), spec.dim)
        else:
            features[m] = _sequence_to_list(table.column(m), spec.dim)
            missing[m] = np.array([s is None for s in features[m]], bool)
    meta = meta.model_copy(update={"modalities": {m: meta.modalities[m] for m in wanted}, "n_rows": len(segments)})
    return FeatureSet(meta, segments, features, missing)


def list_feature_sets(store: str | Path) -> list[tuple[Path, FeatureSetMeta | StoreError]]:
    """Every feature-set file in the store with its metadata (or the error that makes it unreadable)."""
    out: list[tuple[Path, FeatureSetMeta | StoreError]] = []
    root = Path(store)
    if not root.is_dir():
        raise StoreError("store directory not found", path=root)
    for path in sorted(root.glob("[!.]*/[!.]*.parquet")):
        try:
            out.append((path, read_meta(path)))
        except StoreError as e:
            out.append((path, e))
    return out


def store_summary(store: str | Path) -> list[dict]:
    """One dict per feature set: dataset, feature set, modalities and dims, rows per split, label balance."""
    rows = []
    for path, meta in list_feature_sets(store):
        if isinstance(meta, StoreError):
            rows.append({"path": str(path), "error": str(meta)})
            continue
        try:
            df = _verified_labels(path)
        except StoreError as e:
            rows.append({"path": str(path), "error": str(e)})
            continue
        splits = {}
        for s, g in df.groupby("split", sort=False):
            entry: dict = {"rows": len(g)}
            if g["label_bin"].notna().any():
                entry["positive"] = int((g["label_bin"] == 1).sum())
            if g["label_class"].notna().any():
                entry["classes"] = {int(k): int(v) for k, v in g["label_class"].value_counts().sort_index().items()}
            splits[s] = entry
        rows.append(
            {
                "dataset": meta.dataset,
                "feature_set": meta.feature_set,
                "modalities": {m: f"{s.kind}[{s.dim}]" for m, s in meta.modalities.items()},
                "splits": {s: splits[s] for s in SPLITS if s in splits},
                "producer": f"{meta.producer.kind}:{meta.producer.name}",
                "rows": meta.n_rows,
                "source_hash": meta.source_hash[:12],
                "path": str(path),
            }
        )
    return rows


def format_summary(rows: list[dict]) -> str:
    """Human-readable `store info` text."""
    if not rows:
        return "(empty store)"
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"!! {r['path']}: {r['error']}")
            continue
        mods = ", ".join(f"{m} {d}" for m, d in r["modalities"].items())
        lines.append(f"{r['dataset']}/{r['feature_set']}  ({r['producer']}, {r['rows']} rows, source {r['source_hash']})")
        lines.append(f"  modalities: {mods}")
        for s, e in r["splits"].items():
            bal = ""
            if "positive" in e:
                bal = f"  positive {e['positive']}/{e['rows']} ({100 * e['positive'] / e['rows']:.1f}%)"
            elif "classes" in e:
                bal = "  classes " + json.dumps(e["classes"])
            lines.append(f"  {s:<5} {e['rows']:>6} rows{bal}")
    return "\n".join(lines)
