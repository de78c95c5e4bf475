"""Writing an extraction run: per-item results -> one feature set, its ``.seq`` companion, the quarantine table.

Each item's :class:`~pipeline.extract.ItemResult` is summarised in a small JSON record (:func:`summarize`:
dimensions, labels, counts, quarantine records) when it finishes; the feature sets are then written
from the records plus one result at a time (``load(i)``), one Parquet row group per item, so memory is
bounded by one item whatever the corpus size.

* ``<feature_set>``: one vector per segment per column (missing = null cell, never zeros that look real),
* ``<feature_set>.seq``: the kept sequences (word vectors for the text-CNN, word-level alignment),
* ``<dataset>/_quarantine/<feature_set>.parquet``: ``item_id, segment_id, modality, stage, reason``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import InputError, StoreError
from pipeline.extract import ExtractConfig, ItemResult, build_extractor
from pipeline.provenance import hash_json
from pipeline.store import (
    FeatureSet,
    FeatureSetMeta,
    ModalitySpec,
    Producer,
    make_meta,
    write_atomic,
    write_feature_set_chunks,
)

QUARANTINE_COLUMNS = ["item_id", "segment_id", "modality", "stage", "reason"]
SEGMENT_DEFAULTS = {"split": "train", "label_bin": None, "label_class": None, "score": None, "transcript": None}


def summarize(res: ItemResult) -> dict[str, Any]:
    """What the driver keeps of a finished item (JSON): enough to write the metadata before the data."""
    seq_dims = {c: next((s.shape[1] for s in v if s is not None), None) for c, v in res.sequences.items()}
    labels = res.segments["label"].dropna().astype(str).unique().tolist() if "label" in res.segments else []
    return {
        "item_id": res.item_id, "n_segments": len(res.segments),
        "vectors": {c: int(v.shape[1]) for c, v in res.vectors.items()},
        "sequences": {c: int(d) for c, d in seq_dims.items() if d is not None},
        "dim_names": {c: n for c, n in res.dim_names.items() if n},
        "present": {c: int(p.sum()) for c, p in res.present.items()},
        "labels": sorted(labels), "source_hash": res.source_hash, "media_seconds": float(res.media_seconds),
        "seconds": {c: float(s) for c, s in res.seconds.items()}, "stats": res.notes,
        "quarantine": list(res.quarantine),
    }


def _dims(records: Sequence[dict], kind: str) -> dict[str, int]:
    dims: dict[str, int] = {}
    for r in records:
        for col, d in r[kind].items():
            if dims.setdefault(col, d) != d:
                raise StoreError(f"column {col!r}: dimension {d} in item {r['item_id']}, {dims[col]} elsewhere")
    return dims


def _stats(records: Sequence[dict], col: str) -> dict[str, int]:
    tot: dict[str, int] = {}
    for r in records:
        for k, v in r["stats"].get(col, {}).items():
            tot[k] = tot.get(k, 0) + int(v)
    return tot


def _provenance(cfg: ExtractConfig) -> dict:
    out = {}
    for _, spec in cfg.specs():
        ext = build_extractor(spec)
        cls = type(ext)
        entry = {"extractor": spec.name, "class": f"{cls.__module__}:{cls.__qualname__}",
                 "config": ext.cfg.model_dump(mode="json"), "config_hash": ext.cfg.config_hash()}
        try:
            entry.update(ext.provenance())
        except Exception as e:  # noqa: BLE001 - provenance is best effort, never fails a write
            entry["provenance_error"] = str(e)
        out[spec.column] = entry
    return out


def _segments(res: ItemResult, label_index: dict[str, int]) -> pd.DataFrame:
    seg = res.segments.reset_index(drop=True).copy()
    seg["video_id"] = res.item_id
    if "label" in seg.columns and label_index:  # class labels numbered over the whole corpus
        seg["label_class"] = seg["label"].map(label_index)
    for c, default in SEGMENT_DEFAULTS.items():
        if c not in seg.columns:
            seg[c] = default
    return seg


def _vector_chunk(res: ItemResult, meta: FeatureSetMeta, label_index: dict[str, int]) -> FeatureSet:
    n = len(res.segments)
    feats, missing = {}, {}
    for col, spec in meta.modalities.items():
        if col in res.vectors:
            miss = ~res.present[col]
            feats[col] = np.where(miss[:, None], 0.0, res.vectors[col]).astype(np.float32)
            missing[col] = miss
        else:
            feats[col], missing[col] = np.zeros((n, spec.dim), np.float32), np.ones(n, bool)
    return FeatureSet(meta, _segments(res, label_index), feats, missing)


def _sequence_chunk(res: ItemResult, meta: FeatureSetMeta, label_index: dict[str, int]) -> FeatureSet:
    seqs = {c: res.sequences.get(c, [None] * len(res.segments)) for c in meta.modalities}
    return FeatureSet(meta, _segments(res, label_index), seqs)


def write_streamed(
    records: Sequence[dict], load: Callable[[int], ItemResult], *, store: str | Path, dataset: str,
    feature_set: str = "extracted", cfg: ExtractConfig | None = None, extra: dict | None = None,
) -> Path:
    """The feature set (+ ``.seq``) of ``records`` (items without a result are left out), loading one
    result at a time with ``load(index into records)``; the quarantine table is written by the caller."""
    cfg = cfg or ExtractConfig()
    kept = [i for i, r in enumerate(records) if r.get("n_segments")]
    recs = [records[i] for i in kept]
    vec_dims, seq_dims = _dims(recs, "vectors"), _dims(recs, "sequences")
    if not vec_dims:
        raise InputError("no feature column was produced for any item (see the quarantine table)")
    names = sorted({x for r in recs for x in r["labels"]}) or None
    label_index = {n: i for i, n in enumerate(names or [])}
    prov = _provenance(cfg)
    modality_of = {s.column: m for m, s in cfg.specs()}
    source_hash = hash_json([r["source_hash"] for r in recs])
    n_rows = sum(r["n_segments"] for r in recs)
    base_extra = {"extractors": prov, "n_items": len(recs), "media_seconds": sum(r["media_seconds"] for r in recs),
                  "oov": {c: _stats(recs, c) for c in prov if any(c in r["stats"] for r in recs)}, **(extra or {})}
    producer = Producer.of("extractor", "extract", cfg.model_dump(mode="json"))

    def spec_of(col: str, kind: str, dim: int) -> ModalitySpec:
        names_ = next((r["dim_names"][col] for r in recs if col in r["dim_names"]), None)
        p = prov.get(col, {})
        desc = f"{p.get('extractor', col)} ({modality_of.get(col, '?')}), pooled by {cfg.collapse}" if kind == "vector" \
            else f"{p.get('extractor', col)} ({modality_of.get(col, '?')}) sequence clipped to the segment"
        return ModalitySpec(kind=kind, dim=dim, dim_names=names_ if names_ and len(names_) == dim else None,
                            description=desc)

    def chunks(meta: FeatureSetMeta, make: Callable) -> Iterator[FeatureSet]:
        for i in kept:
            yield make(load(i), meta, label_index)

    not_produced = [s.column for _, s in cfg.specs() if s.column not in vec_dims]
    meta = make_meta(dataset=dataset, feature_set=feature_set,
                     modalities={c: spec_of(c, "vector", d) for c, d in vec_dims.items()}, producer=producer,
                     source_hash=source_hash, label_names=names,
                     extra={**base_extra, "columns_never_produced": not_produced}).model_copy(update={"n_rows": n_rows})
    origin = f"extract:{dataset}"
    path = write_feature_set_chunks(store, meta, chunks(meta, _vector_chunk), origin)
    if seq_dims:
        smeta = make_meta(dataset=dataset, feature_set=f"{feature_set}.seq",
                          modalities={c: spec_of(c, "sequence", d) for c, d in seq_dims.items()}, producer=producer,
                          source_hash=source_hash, label_names=names,
                          lineage=[f"{dataset}/{feature_set}@{source_hash}"],
                          extra=base_extra).model_copy(update={"n_rows": n_rows})
        write_feature_set_chunks(store, smeta, chunks(smeta, _sequence_chunk), origin)
    return path


def write_extracted(results: Sequence[ItemResult], *, store: str | Path, dataset: str, feature_set: str = "extracted",
                    cfg: ExtractConfig | None = None, extra: dict | None = None) -> Path:
    """In-memory results (tests, small runs): the same writes as the driver's, quarantine table included."""
    records = [summarize(r) for r in results]
    path = write_streamed(records, results.__getitem__, store=store, dataset=dataset, feature_set=feature_set,
                          cfg=cfg, extra=extra)
    write_quarantine(store, dataset, feature_set, [q for r in records for q in r["quarantine"]])
    return path


def quarantine_path(store: str | Path, dataset: str, feature_set: str) -> Path:
    return Path(store) / dataset / "_quarantine" / f"{feature_set}.parquet"


def write_quarantine(store: str | Path, dataset: str, feature_set: str, records: list[dict]) -> Path:
    """The quarantine table of one extraction run (rewritten whole, atomically; empty = nothing quarantined)."""
    df = pd.DataFrame(records, columns=QUARANTINE_COLUMNS).astype(object)
    table = pa.Table.from_pandas(df.where(df.notna(), None), preserve_index=False,
                                 schema=pa.schema([(c, pa.string()) for c in QUARANTINE_COLUMNS]))
    return write_atomic(table, quarantine_path(store, dataset, feature_set))
