"""Importer for the legacy padded pickle of ARGF / HFFN / bc-LSTM (``unimodal_mosi_2way.pickle``).

Layout: ``{m}_{train,test}`` float arrays [videos, utterances, D] per modality m, ``{train,test}_mask``
[videos, utterances] (1 = real utterance; padded rows are NOT zero, so the mask must be applied),
``{train,test}_label`` one-hot [videos, utterances, C]. The test keys may be absent.

Video ids are not in the pickle. A segments table (``segments=``, e.g. ../shared/data/mosi/segments.csv)
lists the train-section videos in the pickle's order, then the test-section videos it knows (for MOSI:
the 10 honest-valid videos, in position order); every mapping is checked against the mask counts and
labels. Without it, ids are positional and stable: ``train-v003`` / ``train-v003-u07``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.modalities import MODALITIES
from pipeline.errors import InputError
from pipeline.importers.common import note, read_segments_table, require_file
from pipeline.importers.splits import get_policy
from pipeline.provenance import StageConfig, hash_file, hash_json
from pipeline.safe_pickle import safe_load
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set

SECTIONS = ("train", "test")
DEFAULT_FEATURE_SET = "bclstm-context"


class LegacyPickleConfig(StageConfig):
    split_policy: str = "honest-mosi"
    feature_set: str = DEFAULT_FEATURE_SET
    segments_file: str | None = None  # file name only (no machine paths in metadata)
    segments_hash: str | None = None


def _check_layout(d: object, origin: str) -> tuple[list[str], list[str]]:
    """Modalities and sections present; raises on wrong keys or shapes."""
    if not isinstance(d, dict):
        raise InputError(f"expected a dict of arrays, found {type(d).__name__}", path=origin)
    mods = [m for m in MODALITIES if f"{m}_train" in d]
    required = [f"{m}_train" for m in mods] + ["train_mask", "train_label"]
    absent = [k for k in required if k not in d]
    if not mods or absent:
        raise InputError(
            f"wrong keys: expected {{text,audio,video}}_train, train_mask, train_label (test keys optional); "
            f"missing {absent or ['any of ' + ', '.join(f'{m}_train' for m in MODALITIES)]}; "
            f"found {sorted(map(str, d))}",
            path=origin,
        )
    sections = ["train"]
    test_keys = [f"{m}_test" for m in mods] + ["test_mask", "test_label"]
    present = [k for k in test_keys if k in d]
    if present:
        if len(present) != len(test_keys):
            raise InputError(f"wrong keys: test section incomplete, missing {sorted(set(test_keys) - set(present))}", path=origin)
        sections.append("test")
    for s in sections:
        mask, label = d[f"{s}_mask"], d[f"{s}_label"]
        for k in (f"{s}_mask", f"{s}_label", *(f"{m}_{s}" for m in mods)):
            if not isinstance(d[k], np.ndarray):
                raise InputError(f"{k} is a {type(d[k]).__name__}, expected a numpy array", path=origin)
            if not (np.issubdtype(d[k].dtype, np.number) or d[k].dtype == bool):
                raise InputError(f"{k} holds {d[k].dtype} values, expected numbers", path=origin)
        if mask.ndim != 2 or label.ndim != 3 or label.shape[:2] != mask.shape:
            raise InputError(f"{s}_mask {mask.shape} / {s}_label {label.shape}: expected [V, U] / [V, U, C]", path=origin)
        shapes = {f"{m}_{s}": d[f"{m}_{s}"].shape for m in mods}
        if any(len(sh) != 3 or sh[:2] != mask.shape for sh in shapes.values()):
            raise InputError(
                f"mismatched lengths between modalities: {s}_mask is {mask.shape[0]} videos x {mask.shape[1]} "
                f"utterances, features are {shapes}",
                path=origin,
            )
        if not np.isin(mask, (0, 1)).all():
            raise InputError(f"{s}_mask has values other than 0/1", path=origin)
    return mods, sections


def _section_rows(d: dict, s: str, mods: list[str], origin: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Real (masked-in) utterances of one section, in (video, utterance) order."""
    mask = d[f"{s}_mask"].astype(bool)
    v_idx, u_idx = np.nonzero(mask)
    label = np.asarray(d[f"{s}_label"], dtype=np.float64)[mask]
    if len(label) and (not np.isin(label, (0, 1)).all() or not (label.sum(axis=1) == 1).all()):
        bad = int(np.flatnonzero(~(np.isin(label, (0, 1)).all(1) & (label.sum(1) == 1)))[0])
        raise InputError(f"{s}_label is not one-hot at video {v_idx[bad]}, utterance {u_idx[bad]}", path=origin)
    feats = {}
    for m in mods:
        x = np.asarray(d[f"{m}_{s}"], dtype=np.float32)[mask]
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{m}_{s}: NaN/inf values in {int(bad.sum())} real utterances (first: video {v_idx[i]}, "
                f"utterance {u_idx[i]})",
                path=origin,
            )
        feats[m] = x
    rank = np.zeros_like(u_idx)
    for v in np.unique(v_idx):  # 1-based rank among the video's real utterances
        rank[v_idx == v] = np.arange(1, int((v_idx == v).sum()) + 1)
    rows = pd.DataFrame({"section": s, "position": v_idx, "utt": u_idx, "rank": rank, "cls": label.argmax(1)})
    return rows, feats


def _video_names(
    seg: pd.DataFrame | None, counts: dict[str, np.ndarray], known_test: tuple[int, ...] | None, origin: str
) -> dict[tuple[str, int], str]:
    """(section, position) -> video id from the segments table, in the table's order of first appearance."""
    if seg is None:
        return {}
    order = list(dict.fromkeys(seg["video_id"]))
    n_train = len(counts["train"])
    if len(order) < n_train:
        raise InputError(f"segments table lists {len(order)} videos, the pickle's train section has {n_train}", path=origin)
    names = {("train", i): v for i, v in enumerate(order[:n_train])}
    rest = order[n_train:]
    if rest and "test" in counts:
        n_test = len(counts["test"])
        if len(rest) == n_test:
            positions: tuple[int, ...] = tuple(range(n_test))
        elif known_test is not None and len(rest) == len(known_test):
            positions = known_test
        else:
            raise InputError(
                f"segments table lists {len(rest)} videos after the {n_train} train-section ones; expected "
                f"{n_test}{f' or {len(known_test)}' if known_test else ''} (test section)",
                path=origin,
            )
        names.update({("test", p): v for p, v in zip(positions, rest, strict=True)})
    return names


def build_legacy_pickle(
    path: str | Path,
    *,
    dataset: str,
    split_policy: str = "honest-mosi",
    segments: str | Path | None = None,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> FeatureSet:
    """Read and validate a legacy padded pickle into an in-memory :class:`FeatureSet` (no write)."""
    p = require_file(path, "pickle file")
    origin = str(p)
    policy = get_policy(split_policy, origin)
    d = safe_load(p)
    mods, sections = _check_layout(d, origin)
    n_videos = {s: d[f"{s}_mask"].shape[0] for s in sections}
    policy.check(n_videos["train"], n_videos.get("test", 0), origin)
    notes: list[str] = []

    parts, feats = [], {m: [] for m in mods}
    for s in sections:
        rows, f = _section_rows(d, s, mods, origin)
        parts.append(rows)
        for m in mods:
            feats[m].append(f[m])
        counts = d[f"{s}_mask"].sum(axis=1)
        empty = [int(i) for i in np.flatnonzero(counts == 0)]
        if empty:
            note(notes, f"{len(empty)} of {len(counts)} {s}-section videos have no real utterances (mask all 0, "
                        f"e.g. held-out videos blanked in a dev copy) and give 0 rows: positions {empty}")
    rows = pd.concat(parts, ignore_index=True)
    counts = {s: d[f"{s}_mask"].sum(axis=1).astype(int) for s in sections}

    seg = read_segments_table(segments, split_column=None) if segments is not None else None
    names = _video_names(seg, counts, policy.known_test_positions(), str(segments))
    rows["split"] = [policy.assign(s, int(pos)) for s, pos in zip(rows["section"], rows["position"], strict=True)]
    empty_splits = sorted({policy.assign(s, i) for s in sections for i in range(n_videos[s])} - set(rows["split"]))
    if empty_splits:
        note(notes, f"split(s) {empty_splits} of policy {split_policy!r} have 0 rows in this file")
    rows["video_id"] = [
        names.get((s, int(pos)), f"{s}-v{int(pos):03d}") for s, pos in zip(rows["section"], rows["position"], strict=True)
    ]
    named = np.array([(s, int(pos)) in names for s, pos in zip(rows["section"], rows["position"], strict=True)], bool)
    rows["segment_id"] = np.where(
        named,
        rows["video_id"] + "_" + rows["rank"].astype(str),
        rows["video_id"] + "-u" + rows["utt"].map("{:02d}".format),
    )
    rows["segment_index"] = np.where(named, rows["rank"], rows["utt"])
    rows["label_bin"] = rows["cls"] if d["train_label"].shape[-1] == 2 else None
    rows["label_class"] = rows["cls"]
    if seg is not None:
        rows = _join_segments(rows, seg, named, str(segments))

    cfg = LegacyPickleConfig(
        split_policy=split_policy, feature_set=feature_set,
        segments_file=None if segments is None else Path(segments).name,
        segments_hash=None if segments is None else hash_file(segments),
    )
    dim = {m: int(d[f"{m}_train"].shape[-1]) for m in mods}
    modalities = {
        m: ModalitySpec(kind="vector", dim=dim[m], description=f"utterance-level {m} features from a legacy padded pickle")
        for m in mods
    }
    source_hash = hash_file(p) if segments is None else hash_json([hash_file(p), cfg.segments_hash])
    n_classes = d["train_label"].shape[-1]
    meta = make_meta(
        dataset=dataset, feature_set=feature_set, modalities=modalities,
        producer=Producer.of("importer", "legacy_pickle", cfg.model_dump(mode="json")),
        source_hash=source_hash,
        label_names=["negative", "positive"] if n_classes == 2 else [str(i) for i in range(n_classes)],
        extra={"notes": notes, "split_policy": policy.description, "source_file": p.name},
    )
    keep = ["video_id", "segment_id", "segment_index", "split", "label_bin", "label_class"]
    keep += [c for c in ("start", "end", "score", "transcript") if c in rows.columns]
    segments_df = rows[keep].reset_index(drop=True)
    features = {m: np.concatenate(feats[m]) for m in mods}
    return FeatureSet(meta, segments_df, features)


def _join_segments(rows: pd.DataFrame, seg: pd.DataFrame, named: np.ndarray, origin: str) -> pd.DataFrame:
    """Bring times, transcripts and scores from the segments table; check it agrees with the pickle."""
    have = set(seg["segment_id"])
    lost = [s for s, ok in zip(rows["segment_id"], named, strict=True) if ok and s not in have]
    per_video_pickle = rows[named].groupby("video_id", sort=False).size()
    per_video_table = seg.groupby("video_id", sort=False).size()
    diff = [(v, int(n), int(per_video_table.get(v, 0))) for v, n in per_video_pickle.items() if per_video_table.get(v, 0) != n]
    if lost and not diff:
        raise InputError(
            f"{len(lost)} segments of the pickle are not in the segments table by id (first {lost[0]!r}); "
            "segment ids must be {video}_{1-based index}",
            path=origin,
        )
    if diff:
        v, n_p, n_t = diff[0]
        raise InputError(
            f"segments table does not match the pickle's video order: video {v!r} has {n_p} real utterances in "
            f"the pickle and {n_t} rows in the table ({len(diff)} videos differ)",
            path=origin,
        )
    cols = [c for c in ("segment_id", "start", "end", "score", "transcript", "label_bin") if c in seg.columns]
    merged = rows.merge(seg[cols].rename(columns={"label_bin": "table_label_bin"}), on="segment_id", how="left")
    if "table_label_bin" in merged.columns:
        both = merged["table_label_bin"].notna() & merged["label_bin"].notna()
        wrong = both & (merged["table_label_bin"].astype(float) != merged["label_bin"].astype(float))
        if wrong.any():
            raise InputError(
                f"segments table labels disagree with the pickle's one-hot labels for {int(wrong.sum())} segments "
                f"(first {merged.loc[wrong, 'segment_id'].iloc[0]!r}): wrong video order?",
                path=origin,
            )
        merged = merged.drop(columns="table_label_bin")
    return merged


def import_legacy_pickle(
    path: str | Path,
    *,
    store: str | Path,
    dataset: str,
    split_policy: str = "honest-mosi",
    segments: str | Path | None = None,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> Path:
    """Import a legacy padded pickle into ``STORE/<dataset>/<feature_set>.parquet`` (atomic write)."""
    fs = build_legacy_pickle(path, dataset=dataset, split_policy=split_policy, segments=segments, feature_set=feature_set)
    return write_feature_set(store, fs, origin=str(path))
