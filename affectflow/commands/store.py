"""``affectflow store info STORE``: what is in a feature store."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="inspect a feature store")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    info = ssub.add_parser("info", help="list datasets, feature sets, dims, splits, rows and label balance")
    info.add_argument("store", help="store directory")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    from pipeline.store import format_summary, store_summary

    rows = store_summary(args.store)
    print(json.dumps(rows, indent=2) if args.json else format_summary(rows))
    return 1 if any("error" in r for r in rows) else 0
