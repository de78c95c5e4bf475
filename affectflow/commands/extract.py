"""``affectflow extract CORPUS --dataset NAME --store DIR [--config FILE]``: raw media -> aligned features."""

from __future__ import annotations

import argparse
import json

from pipeline.crossfit import CROSS_FIT_DEFAULT, check_cross_fit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract aligned text/audio/visual features of a corpus into the store")
    p.add_argument("corpus", help="corpus folder (with or without manifest.csv) or a manifest file")
    p.add_argument("--dataset", required=True, help="dataset name in the store")
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--config", help="extraction config (JSON, YAML or TOML; see docs/extraction.md)")
    p.add_argument("--feature-set", default="extracted", help="feature set name (default: extracted)")
    p.add_argument("--default-split", default="train", choices=["train", "valid", "test"],
                   help="split of rows whose manifest has none")
    p.add_argument("--text-cnn", action="store_true",
                   help="then train the text-CNN on the TRAIN labels and write <feature-set>.textcnn")
    p.add_argument("--cross-fit", type=int, default=CROSS_FIT_DEFAULT, metavar="K",
                   help="text-CNN: training rows' features from K fold models grouped by video "
                        f"(default {CROSS_FIT_DEFAULT}; 0 = in-sample, which leaks the training labels)")
    p.add_argument("--workers", type=int, default=None, choices=range(1, 257), metavar="N",
                   help="worker processes (default: one per available core)")
    p.add_argument("--no-progress", action="store_true", help="no per-video lines or progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.engine import extract_corpus, local_mapper
    from pipeline.extract import load_config
    from pipeline.logs import to_terminal

    to_terminal(not args.no_progress)  # one line per video (+ a progress bar on a terminal)
    check_cross_fit(args.cross_fit)
    cfg = load_config(args.config)
    summary = extract_corpus(args.corpus, store=args.store, dataset=args.dataset, cfg=cfg,
                             feature_set=args.feature_set,
                             default_split=args.default_split, mapper=local_mapper(args.workers),
                             text_cnn=args.text_cnn, text_cnn_cross_fit=args.cross_fit)
    print(json.dumps(summary.model_dump(), indent=2) if args.json else summary.format())
    return 0
