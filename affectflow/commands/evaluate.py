"""``affectflow evaluate RUN_DIR --split valid|test [--json]``: metrics of a saved run on one split."""

from __future__ import annotations

import argparse
import json
from typing import get_args

from pipeline.train_config import Device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run directory on a split (accuracy, weighted F1, per class, ...)")
    p.add_argument("run_dir", help="run directory written by `affectflow train`")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split to score (default: valid)")
    p.add_argument("--store", help="read the features from this store instead of the one recorded in the run")
    p.add_argument("--device", default="cpu", choices=get_args(Device), help="where to run the model (default: cpu)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluate import evaluate_run, format_metrics

    res = evaluate_run(args.run_dir, args.split, store=args.store, device=args.device)
    print(json.dumps(res, indent=2) if args.json else format_metrics(res))
    return 0
