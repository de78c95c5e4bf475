"""``affectflow import {pickle,csd,table,mmsa,default}``: bring published features into a feature store."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.importers.splits import POLICIES


def register(sub: argparse._SubParsersAction) -> None:
    # The CLI prints the importers' notes itself (from the written metadata); don't echo them twice.
    logging.getLogger("affectflow.importers").addHandler(logging.NullHandler())
    p = sub.add_parser("import", help="import features (legacy pickle, .csd, table) into a feature store")
    isub = p.add_subparsers(dest="import_kind", required=True, metavar="KIND")

    pk = isub.add_parser(
        "pickle", help="legacy padded pickle (ARGF / HFFN / bc-LSTM layout), loaded with a restricted unpickler",
        description="Import a legacy padded pickle. Split policies: "
        + "; ".join(f"{n}: {pol.description}" for n, pol in POLICIES.items()),
    )
    pk.add_argument("path", help="the .pickle file")
    _common(pk, feature_set="bclstm-context")
    pk.add_argument("--split-policy", default="honest-mosi", help=f"one of {sorted(POLICIES)} (default: honest-mosi)")
    pk.add_argument("--segments", help="segments table (CSV/Parquet) listing the pickle's videos in order (ids, times, scores)")
    pk.set_defaults(func=_pickle)

    cs = isub.add_parser("csd", help="CMU-MultimodalSDK computational sequences (.csd); one modality per file")
    cs.add_argument("paths", nargs="+", help="one or more .csd files of the same videos and intervals")
    _common(cs, feature_set="csd", dataset_required=False)
    cs.add_argument("--segments", help="segments table whose split column assigns splits by segment_id")
    cs.add_argument("--split", default="train", help="split of segments not in --segments (default: train)")
    cs.add_argument("--score-from", default="auto", help="1-d modality to copy into the score label ('auto', or 'none')")
    cs.set_defaults(func=_csd)

    tb = isub.add_parser("table", help="segments table + per-modality arrays keyed by segment_id (npz or Parquet)")
    tb.add_argument("--segments", required=True, help="CSV or Parquet: segment_id, video_id, ..., split")
    tb.add_argument("--features", required=True, nargs="+", help="npz / Parquet files with segment_id + [N, D] arrays")
    _common(tb, feature_set="table")
    tb.add_argument("--split-column", default="split", help="segments-table column holding the split (default: split)")
    tb.add_argument("--modalities", nargs="+", help="only these arrays/columns (default: every [N, D] numeric one)")
    tb.set_defaults(func=_table)

    mm = isub.add_parser("mmsa", help="MMSA's aligned-data pickle, loaded with the restricted unpickler")
    mm.add_argument("path", help="the .pkl file (train/valid/test dicts of text/audio/vision, id, labels)")
    _common(mm, feature_set="mmsa")
    mm.set_defaults(func=_mmsa)

    df = isub.add_parser("default", help="the embedded default dataset (data/mosi: bc-LSTM raw features, honest-mosi)")
    df.add_argument("--store", required=True, help="store directory")
    df.set_defaults(func=_default)


def _common(p: argparse.ArgumentParser, *, feature_set: str, dataset_required: bool = True) -> None:
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    if dataset_required:
        p.add_argument("--dataset", required=True, help="dataset name, e.g. mosi")
    else:
        p.add_argument("--dataset", default="mosi", help="dataset name (default: mosi)")
    p.add_argument("--feature-set", default=feature_set, help=f"feature set name (default: {feature_set})")


def _report(paths: list[Path], store: str) -> int:
    from pipeline.store import format_summary, read_meta, store_summary

    for path in paths:
        meta = read_meta(path)
        for n in meta.extra.get("notes", []):
            print(f"note: {n}")
        print(f"wrote {path}")
    rows = [r for r in store_summary(store) if r.get("path") in {str(p) for p in paths}]
    print(format_summary(rows))
    return 0


def _pickle(args: argparse.Namespace) -> int:
    from pipeline.importers.legacy_pickle import import_legacy_pickle

    path = import_legacy_pickle(
        args.path, store=args.store, dataset=args.dataset, split_policy=args.split_policy,
        segments=args.segments, feature_set=args.feature_set,
    )
    return _report([path], args.store)


def _csd(args: argparse.Namespace) -> int:
    from pipeline.importers.csd import import_csd

    path = import_csd(
        args.paths, store=args.store, dataset=args.dataset, feature_set=args.feature_set, segments=args.segments,
        default_split=args.split, score_from=None if args.score_from == "none" else args.score_from,
    )
    return _report([path], args.store)


def _table(args: argparse.Namespace) -> int:
    from pipeline.importers.table import import_table

    path = import_table(
        args.segments, args.features, store=args.store, dataset=args.dataset, feature_set=args.feature_set,
        split_column=args.split_column, modalities=args.modalities,
    )
    return _report([path], args.store)


def _mmsa(args: argparse.Namespace) -> int:
    from pipeline.importers.mmsa import import_mmsa

    return _report([import_mmsa(args.path, store=args.store, dataset=args.dataset, feature_set=args.feature_set)],
                   args.store)


def _default(args: argparse.Namespace) -> int:
    from pipeline.importers.table import import_embedded_default

    return _report(import_embedded_default(args.store), args.store)
