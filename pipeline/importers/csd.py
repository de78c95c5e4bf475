"""CMU-MultimodalSDK computational sequences (``.csd``, HDF5): read, write, store import and export.

File layout (as written by the SDK)::

    /<root name>/data/<video>/features   [n, D]
    /<root name>/data/<video>/intervals  [n, 2]  (start, end seconds)
    /<root name>/metadata/<key>          (1,) variable-length string

Metadata values are kept as the exact strings of the file (the SDK stores JSON-ish text such as
``'"CMU-MOSI"'``), so a read -> write round trip is byte-for-byte equal in features, intervals (dtypes
included) and metadata. In the store, one row per interval: ``segment_id = {video}_{i+1}`` (which is
CMU-MOSI's segment numbering), ``start``/``end`` from the intervals, one vector modality per .csd.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.errors import InputError
from pipeline.importers.common import check_split_names, note, read_segments_table, require_file
from pipeline.provenance import StageConfig, canonical_json, hash_file, hash_json
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, read_feature_set, write_feature_set

# Keys the SDK's metadata template requires (its deploy() asks for missing ones with input()).
SDK_METADATA_KEYS = (
    "root name", "computational sequence description", "computational sequence version",
    "alignment compatible", "dataset name", "dataset version", "creator", "contact",
    "featureset bib citation", "dataset bib citation",
)


@dataclass
class ComputationalSequence:
    root_name: str
    data: dict[str, dict[str, np.ndarray]]  # video -> {"features": [n, D], "intervals": [n, 2]}
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(next(iter(self.data.values()))["features"].shape[1]) if self.data else 0

    def dimension_names(self) -> list[str] | None:
        import json

        try:
            names = json.loads(self.metadata.get("dimension names", "null"))
        except ValueError:
            return None
        return [str(n) for n in names] if isinstance(names, list) and len(names) == self.dim else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0]) if value.size else ""
    return str(value)


def read_csd(path: str | Path) -> ComputationalSequence:
    """Read a .csd file; checks the hierarchy and that features and intervals agree per video."""
    p = require_file(path, "computational sequence")
    try:
        h5 = h5py.File(p, "r")
    except OSError as e:
        raise InputError(f"not an HDF5 computational sequence ({e})", path=p) from e
    with h5:
        roots = list(h5.keys())
        if len(roots) != 1 or not isinstance(h5[roots[0]], h5py.Group):
            raise InputError(f"wrong layout: expected one root group, found {roots}", path=p)
        root = h5[roots[0]]
        if "data" not in root or "metadata" not in root:
            raise InputError(f"wrong keys: /{roots[0]} must hold 'data' and 'metadata' (has {list(root)})", path=p)
        metadata = {k: _text(root["metadata"][k][()]) for k in root["metadata"]}
        data: dict[str, dict[str, np.ndarray]] = {}
        dims = set()
        for vid, grp in root["data"].items():
            if not isinstance(grp, h5py.Group) or "features" not in grp or "intervals" not in grp:
                raise InputError(f"wrong keys: video {vid!r} needs 'features' and 'intervals'", path=p)
            feats, ivs = grp["features"][()], grp["intervals"][()]
            if feats.ndim != 2 or ivs.ndim != 2 or ivs.shape[1] != 2:
                raise InputError(f"video {vid!r}: features {feats.shape} / intervals {ivs.shape}, expected [n, D] / [n, 2]", path=p)
            for key, arr in (("features", feats), ("intervals", ivs)):
                if not np.issubdtype(arr.dtype, np.number):
                    raise InputError(f"video {vid!r}: {key} hold {arr.dtype} values, not numbers", path=p)
            backwards = np.flatnonzero(~(ivs[:, 0] <= ivs[:, 1]))  # NaN bounds fail this test too
            if len(backwards):
                i = int(backwards[0])
                raise InputError(f"video {vid!r}, interval {i}: start {float(ivs[i, 0])!r} is not <= end {float(ivs[i, 1])!r}", path=p)
            if len(feats) != len(ivs):
                raise InputError(
                    f"mismatched lengths: video {vid!r} has {len(feats)} feature rows and {len(ivs)} intervals", path=p
                )
            dims.add(feats.shape[1])
            data[vid] = {"features": feats, "intervals": ivs}
        if len(dims) > 1:
            raise InputError(f"videos have different feature dimensions {sorted(dims)}", path=p)
    return ComputationalSequence(roots[0], data, metadata)


def write_csd(cs: ComputationalSequence, path: str | Path, *, compression: str | None = "gzip") -> Path:
    """Write a .csd atomically (temp file + rename), metadata strings as the SDK writes them."""
    p = Path(path)
    with atomic_path(p) as tmp, h5py.File(tmp, "w") as h5:
        root = h5.create_group(cs.root_name)
        data = root.create_group("data")
        for vid, entry in cs.data.items():
            g = data.create_group(vid)
            for key in ("features", "intervals"):
                arr = np.asarray(entry[key])
                g.create_dataset(key, data=arr, compression=compression if arr.size else None)
        meta = root.create_group("metadata")
        for key, value in cs.metadata.items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.string_dtype())
            ds[0] = value
    return p


# ------------------------------------------------------------------------------------- store mapping


def modality_name(root_name: str) -> str:
    """'Opinion Segment Labels' -> 'opinion_segment_labels' (a valid column name)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", root_name).strip("_").lower()
    return name or "features"


class CsdImportConfig(StageConfig):
    feature_set: str = "csd"
    files: list[str]
    default_split: str = "train"
    segments_file: str | None = None
    score_from: str | None = None


def _auto_score(seqs: dict[str, ComputationalSequence]) -> str | None:
    """The one 1-d modality whose dimension is named like a sentiment score, if there is exactly one."""
    hits = [m for m, cs in seqs.items() if cs.dim == 1 and "sentiment" in cs.metadata.get("dimension names", "").lower()]
    return hits[0] if len(hits) == 1 else None


def build_csd(
    paths: Sequence[str | Path],
    *,
    dataset: str,
    feature_set: str = "csd",
    segments: str | Path | None = None,
    default_split: str = "train",
    score_from: str | None = "auto",
) -> FeatureSet:
    """Several .csd files of the same videos/intervals -> one feature set, one modality per file.

    Splits come from ``segments`` (a segments table, matched by ``segment_id``) where it lists the
    segment, else ``default_split``. ``score_from`` names a 1-d modality to copy into the ``score``
    label (``label_bin`` = score >= 0); ``"auto"`` picks a sentiment-score sequence if there is one.
    """
    if not paths:
        raise InputError("no .csd files given")
    check_split_names(pd.Series([default_split]), "--split")
    seqs: dict[str, ComputationalSequence] = {}
    files: dict[str, Path] = {}
    for path in paths:
        cs = read_csd(path)
        m = modality_name(cs.root_name)
        if m in seqs:
            raise InputError(f"two files give the modality {m!r} (also {files[m]})", path=path)
        seqs[m], files[m] = cs, Path(path)
    notes: list[str] = []
    # Rows: union of videos (first file's order, then new ones), intervals must agree where shared.
    videos = list(dict.fromkeys(v for cs in seqs.values() for v in cs.data))
    rows, feats = [], {m: [] for m in seqs}
    missing = {m: [] for m in seqs}
    for vid in videos:
        have = {m: cs.data[vid] for m, cs in seqs.items() if vid in cs.data}
        ref_m, ref = next(iter(have.items()))
        ivs = np.asarray(ref["intervals"], np.float64)
        for m, entry in have.items():
            if not np.array_equal(np.asarray(entry["intervals"], np.float64), ivs):
                raise InputError(
                    f"video {vid!r}: intervals differ from those in {files[ref_m].name} ({len(entry['intervals'])} vs "
                    f"{len(ivs)} rows); align the sequences first",
                    path=files[m],
                )
        idx = np.arange(1, len(ivs) + 1)
        rows.append(pd.DataFrame({
            "video_id": vid, "segment_id": [f"{vid}_{i}" for i in idx], "segment_index": idx,
            "start": ivs[:, 0], "end": ivs[:, 1],
        }))
        for m, cs in seqs.items():
            if m in have:
                x = np.asarray(have[m]["features"], np.float64)
                bad = ~np.isfinite(x).all(axis=1)
                if bad.any():
                    raise InputError(f"video {vid!r}: NaN/inf values in {int(bad.sum())} feature rows", path=files[m])
                feats[m].append(have[m]["features"].astype(np.float32))
                missing[m].append(np.zeros(len(ivs), bool))
            else:
                feats[m].append(np.zeros((len(ivs), cs.dim), np.float32))
                missing[m].append(np.ones(len(ivs), bool))
    for m in seqs:
        n_missing = int(np.concatenate(missing[m]).sum()) if missing[m] else 0
        if n_missing:
            note(notes, f"{files[m].name}: {n_missing} segments of videos it does not cover are stored as missing")
    seg = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["video_id", "segment_id", "segment_index", "start", "end"])
    seg["split"] = default_split
    if segments is not None:
        table = read_segments_table(segments)
        split_of = dict(zip(table["segment_id"], table["split"], strict=True))
        listed = seg["segment_id"].isin(split_of)
        seg.loc[listed, "split"] = seg.loc[listed, "segment_id"].map(split_of)
        if (~listed).any():
            note(notes, f"{int((~listed).sum())} segments are not in {Path(segments).name}: split {default_split!r}")
    score = _auto_score(seqs) if score_from == "auto" else score_from
    if score is not None:
        if score not in seqs or seqs[score].dim != 1:
            raise InputError(f"--score-from {score!r}: needs a 1-d modality, have {{{', '.join(f'{m}: {cs.dim}' for m, cs in seqs.items())}}}")
        s = np.concatenate(feats[score])[:, 0]
        seg["score"] = np.where(np.concatenate(missing[score]), np.nan, s)
        seg["label_bin"] = np.where(seg["score"].isna(), np.nan, (seg["score"] >= 0).astype(float))
    cfg = CsdImportConfig(
        feature_set=feature_set, files=[p.name for p in files.values()], default_split=default_split,
        segments_file=None if segments is None else Path(segments).name, score_from=score,
    )
    specs = {
        m: ModalitySpec(kind="vector", dim=cs.dim, dim_names=cs.dimension_names(),
                        description=cs.metadata.get("computational sequence description", "").strip('"'))
        for m, cs in seqs.items()
    }
    # What export needs to give the files back exactly: root name, metadata strings, dtypes.
    csd_meta = {
        m: {"root_name": cs.root_name, "metadata": cs.metadata,
            "features_dtype": str(next(iter(cs.data.values()))["features"].dtype) if cs.data else "float32",
            "intervals_dtype": str(next(iter(cs.data.values()))["intervals"].dtype) if cs.data else "float32"}
        for m, cs in seqs.items()
    }
    for m, info in csd_meta.items():
        if np.dtype(info["features_dtype"]).itemsize > 4:
            note(notes, f"{files[m].name}: {info['features_dtype']} features stored as float32 (the store's type)")
    sources = [hash_file(p) for p in files.values()] + ([hash_file(segments)] if segments is not None else [])
    meta = make_meta(
        dataset=dataset, feature_set=feature_set, modalities=specs,
        producer=Producer.of("importer", "csd", cfg.model_dump(mode="json")),
        source_hash=hash_json(sources),
        label_names=["negative", "positive"] if score is not None else None,
        extra={"notes": notes, "csd": csd_meta},
    )
    missing_arr = {m: np.concatenate(v) if v else np.zeros(0, bool) for m, v in missing.items()}
    features = {m: np.concatenate(v) if v else np.zeros((0, seqs[m].dim), np.float32) for m, v in feats.items()}
    return FeatureSet(meta, seg, features, missing_arr)


def import_csd(
    paths: Sequence[str | Path] | str | Path,
    *,
    store: str | Path,
    dataset: str,
    feature_set: str = "csd",
    segments: str | Path | None = None,
    default_split: str = "train",
    score_from: str | None = "auto",
) -> Path:
    """Import one or more .csd files into ``STORE/<dataset>/<feature_set>.parquet``."""
    if isinstance(paths, str | Path):
        paths = [paths]
    fs = build_csd(paths, dataset=dataset, feature_set=feature_set, segments=segments,
                   default_split=default_split, score_from=score_from)
    return write_feature_set(store, fs, origin=str(paths[0]))


def feature_set_to_csd(fs: FeatureSet, modality: str) -> ComputationalSequence:
    """One modality of a feature set as a computational sequence (rows grouped by video, in index order)."""
    spec = fs.meta.modalities[modality]
    if spec.kind != "vector":
        raise InputError(f"modality {modality!r} is a sequence without frame times; .csd export needs intervals")
    seg = fs.segments
    if seg["start"].isna().any() or seg["end"].isna().any():
        raise InputError(f"{fs.meta.dataset}/{fs.meta.feature_set}: segments without start/end; .csd needs intervals")
    info = fs.meta.extra.get("csd", {}).get(modality)
    f_dtype = np.dtype(info["features_dtype"]) if info else np.float32
    i_dtype = np.dtype(info["intervals_dtype"]) if info else np.float64
    x = np.asarray(fs.features[modality])
    absent = fs.missing.get(modality, np.zeros(len(seg), bool))
    data: dict[str, dict[str, np.ndarray]] = {}
    order = seg.assign(_row=np.arange(len(seg)))[~absent]
    for vid, g in order.groupby("video_id", sort=False):
        g = g.sort_values("segment_index", kind="stable")
        rows = g["_row"].to_numpy()
        data[str(vid)] = {
            "features": x[rows].astype(f_dtype),
            "intervals": g[["start", "end"]].to_numpy(np.float64).astype(i_dtype),
        }
    if info:
        return ComputationalSequence(info["root_name"], data, dict(info["metadata"]))
    metadata = {k: "null" for k in SDK_METADATA_KEYS}
    metadata.update({
        "root name": canonical_json(modality),
        "computational sequence description": canonical_json(spec.description or f"{modality} features"),
        "computational sequence version": canonical_json("1.0"),
        "alignment compatible": "true",
        "dataset name": canonical_json(fs.meta.dataset),
        "dimension names": canonical_json(spec.dim_names),
        "creator": canonical_json(f"affectflow {fs.meta.producer.kind}:{fs.meta.producer.name}"),
        "source hash": canonical_json(fs.meta.source_hash),
    })
    return ComputationalSequence(modality, data, metadata)


def export_csd(
    *, store: str | Path, dataset: str, feature_set: str, out: str | Path, modalities: Sequence[str] | None = None
) -> list[Path]:
    """Write each (vector) modality of a stored feature set as ``OUT/<modality>.csd``."""
    fs = read_feature_set(store, dataset, feature_set, modalities=modalities)
    return [write_csd(feature_set_to_csd(fs, m), Path(out) / f"{m}.csd") for m in fs.meta.modalities]
