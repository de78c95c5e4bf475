"""``affectflow`` console script.

Each subcommand lives in its own module under ``affectflow/commands/`` and exposes
``register(subparsers)``; the module is discovered here, so adding a command touches one file.
Expected failures (:class:`pipeline.errors.AffectflowError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from pipeline.errors import AffectflowError


def build_parser() -> argparse.ArgumentParser:
    from affectflow import commands

    parser = argparse.ArgumentParser(
        prog="affectflow",
        description="Raw talking-head video -> aligned multimodal features -> context networks -> fusion models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"affectflow.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AffectflowError as e:
        print(f"affectflow {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
