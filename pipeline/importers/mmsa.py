"""MMSA interchange: a feature set as MMSA's aligned-data pickle, and such a pickle into the store.

The layout (learnt from MMSA 2.2.1's documentation and the fields its data loader reads; tested against
that loader in tests/test_mmsa.py): a dict with one entry per split ``train`` / ``valid`` / ``test``,
each a dict of

* ``text``, ``audio``, ``vision``: float32 ``[N, T, D]`` (aligned data: one T per modality);
* ``id``: ``"<video>$_$<clip>"`` strings; ``raw_text``: the transcripts;
* ``regression_labels``: float ``[N]`` (the sentiment score); ``classification_labels``: ``[N]``;
* ``audio_lengths`` / ``vision_lengths``: real steps per row (used by MMSA's unaligned mode).

Export writes one step per row (``T = 1``: the store's utterance vectors; sequence modalities are
mean-pooled, as everywhere else); a segment missing a modality is written as zeros, since the layout
has no missing-data marker, and the count is returned. Import reads through the restricted unpickler
(numpy arrays, lists, dicts and strings only); ``T > 1`` modalities become sequences cut to their
``*_lengths`` when given. Audio ``-inf`` values (present in MMSA's published MOSI audio) become 0, as
MMSA's own loader does; any other NaN/inf is an input error.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.data import FeaturesArg, load_joined
from pipeline.errors import InputError
from pipeline.importers.common import check_finite, log, note, require_file
from pipeline.provenance import StageConfig, hash_file
from pipeline.safe_pickle import safe_load
from pipeline.store import SPLITS, FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set

MODALITY_KEYS = {"text": "text", "audio": "audio", "video": "vision"}  # store modality -> MMSA key
ID_SEP = "$_$"  # MMSA's separator between video id and clip id


def _clip(video: str, segment: str) -> str:
    """MMSA's clip part: MOSI-style ``<video>_<n>`` segment ids give ``n``, others stay whole."""
    return segment[len(video) + 1:] if segment.startswith(f"{video}_") else segment


def mmsa_dict(store: str | Path, dataset: str, features: FeaturesArg = None) -> tuple[dict, int]:
    """The MMSA layout of a feature set (or a modality -> feature set mapping) and the number of
    (segment, modality) cells written as zeros because they are missing."""
    joined = load_joined(store, dataset, features)
    absent = [m for m in MODALITY_KEYS if m not in joined.x]
    if absent:
        raise InputError(f"MMSA's layout needs text, audio and video; {dataset} features {features!r} lack {absent}")
    seg = joined.segments
    split = seg["split"].to_numpy()
    score = seg["score"].to_numpy(dtype=np.float32, na_value=np.nan)
    label = seg["label_bin"] if seg["label_bin"].notna().any() else seg["label_class"]
    label = label.to_numpy(dtype=np.float32, na_value=np.nan)
    text = seg["transcript"].fillna("").astype(str).to_numpy() if "transcript" in seg else np.full(len(seg), "")
    ids = np.array([f"{v}{ID_SEP}{_clip(v, s)}" for v, s in zip(seg["video_id"], seg["segment_id"], strict=True)], object)
    out: dict = {}
    for s in ("train", "valid", "test"):
        rows = split == s
        part = {key: joined.x[m][rows][:, None, :].astype(np.float32) for m, key in MODALITY_KEYS.items()}
        part.update({"id": ids[rows], "raw_text": text[rows].astype(object), "regression_labels": score[rows],
                     "classification_labels": label[rows], "audio_lengths": [1] * int(rows.sum()),
                     "vision_lengths": [1] * int(rows.sum())})
        out[s] = part
    empty = [s for s, part in out.items() if not len(part["id"])]
    if empty:  # written anyway (the layout allows it), but MMSA's MMDataLoader cannot shuffle an empty split
        log.warning("%s has no %s rows: MMSA's MMDataLoader needs all three splits non-empty", dataset, empty)
    return out, int(sum(joined.missing[m].sum() for m in MODALITY_KEYS))


def export_mmsa(store: str | Path, dataset: str, out: str | Path, features: FeaturesArg = None) -> tuple[Path, int]:
    """Write the MMSA pickle atomically; returns its path and the number of zero-filled missing cells."""
    data, n_missing = mmsa_dict(store, dataset, features)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return path, n_missing


# ---------------------------------------------------------------------------------------------- import


class MMSAImportConfig(StageConfig):
    feature_set: str = "mmsa"
    source_file: str


def _split_rows(part: object, s: str, origin: str, notes: list[str]) -> tuple[pd.DataFrame, dict, dict]:
    if not isinstance(part, dict):
        raise InputError(f"split {s!r} is a {type(part).__name__}, expected a dict", path=origin)
    need = [*MODALITY_KEYS.values(), "id", "regression_labels"]
    absent = [k for k in need if k not in part]
    if absent:
        raise InputError(f"wrong keys in split {s!r}: missing {absent} (has {sorted(map(str, part))})", path=origin)
    ids = [str(i) for i in part["id"]]
    n = len(ids)
    feats, lengths = {}, {}
    for m, key in MODALITY_KEYS.items():
        arr = np.asarray(part[key], dtype=np.float32)
        if arr.ndim != 3 or len(arr) != n:
            raise InputError(f"{s}/{key}: expected [{n}, T, D] (one row per id), got {arr.shape}", path=origin)
        if m == "audio" and np.isneginf(arr).any():
            note(notes, f"{s}/audio: {int(np.isneginf(arr).sum())} -inf values set to 0 (as MMSA's loader does)")
            arr = np.where(np.isneginf(arr), 0.0, arr).astype(np.float32)
        if n:
            check_finite(arr, f"{s}/{key}", origin, ids)
        feats[m] = arr
        given = part.get(f"{key}_lengths")
        lengths[m] = np.full(n, arr.shape[1]) if given is None or m == "text" else np.asarray(given, int)
    bad = [i for i in ids if ID_SEP not in i]
    if bad:
        raise InputError(f"{s}: ids must be '<video>{ID_SEP}<clip>', e.g. {bad[0]!r}", path=origin)
    video, clip = zip(*(i.split(ID_SEP, 1) for i in ids), strict=True) if n else ((), ())
    cls = np.asarray(part.get("classification_labels", np.full(n, np.nan)), dtype=float)
    score = np.asarray(part["regression_labels"], dtype=float).reshape(-1)
    binary = bool(np.isin(cls[~np.isnan(cls)], (0, 1)).all())
    raw = part.get("raw_text")
    rows = pd.DataFrame({
        "video_id": list(video), "segment_id": [f"{v}_{c}" for v, c in zip(video, clip, strict=True)], "_clip": list(clip),
        "split": s, "score": score, "transcript": [str(t) for t in raw] if raw is not None else None,
        "label_class": pd.array(np.where(np.isnan(cls), pd.NA, cls), dtype="Int64") if (~np.isnan(cls)).any() else pd.NA,
        "label_bin": pd.array(np.where(np.isnan(cls), pd.NA, cls) if binary else
                              np.where(np.isnan(score), pd.NA, score >= 0), dtype="Int64"),
    })
    return rows, feats, lengths


def build_mmsa(path: str | Path, *, dataset: str, feature_set: str = "mmsa") -> FeatureSet:
    """Read and validate an MMSA aligned-data pickle into a :class:`FeatureSet` (no write)."""
    p = require_file(path, "MMSA pickle")
    origin = str(p)
    data = safe_load(p)
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise InputError(f"not MMSA's layout: expected a dict with train/valid/test entries, found "
                         f"{type(data).__name__}{sorted(map(str, data))[:6] if isinstance(data, dict) else ''}", path=p)
    notes: list[str] = []
    parts = [(s, *_split_rows(data[s], s, origin, notes)) for s in SPLITS if s in data]
    seg = pd.concat([r for _, r, _, _ in parts], ignore_index=True)
    dup = seg["segment_id"][seg["segment_id"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate ids across splits, e.g. {dup.iloc[0]!r}", path=p)
    # MOSI-style numeric clip ids are the utterance index; otherwise the order within the video
    as_int = pd.to_numeric(seg.pop("_clip"), errors="coerce")
    seg["segment_index"] = as_int.astype("Int64") if as_int.notna().all() else seg.groupby("video_id").cumcount()
    features, specs = {}, {}
    for m, key in MODALITY_KEYS.items():
        arrs = [f[m] for _, _, f, _ in parts]
        steps, dim = {a.shape[1] for a in arrs if len(a)}, arrs[0].shape[2]
        if any(a.shape[2] != dim for a in arrs):
            raise InputError(f"{key}: the splits have different feature dims {[a.shape[2] for a in arrs]}", path=p)
        if steps <= {1}:
            features[m] = np.concatenate([a[:, 0, :] for a in arrs])
            specs[m] = ModalitySpec(kind="vector", dim=dim, description=f"MMSA {key}")
        else:
            seqs: list[np.ndarray] = []
            for _, _, f, ln in parts:
                seqs += [f[m][i, : int(n)] for i, n in enumerate(ln[m])]
            features[m] = seqs
            specs[m] = ModalitySpec(kind="sequence", dim=dim, description=f"MMSA {key} sequence")
    cfg = MMSAImportConfig(feature_set=feature_set, source_file=p.name)
    meta = make_meta(dataset=dataset, feature_set=feature_set, modalities=specs,
                     producer=Producer.of("importer", "mmsa", cfg.model_dump(mode="json")), source_hash=hash_file(p),
                     label_names=["negative", "positive"] if seg["label_bin"].notna().any() else None,
                     extra={"notes": notes, "source_file": p.name})
    return FeatureSet(meta, seg, features)


def import_mmsa(path: str | Path, *, store: str | Path, dataset: str, feature_set: str = "mmsa") -> Path:
    return write_feature_set(store, build_mmsa(path, dataset=dataset, feature_set=feature_set), origin=str(path))
