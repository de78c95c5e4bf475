"""``python -m bench [NAME [ARGS...]]``: list the benchmarks, or run one (``bench/NAME.py``'s ``main``).

Benchmarks are scripts in this folder with a ``main()``; each writes its table to ``bench/results/``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(i.name for i in pkgutil.iter_modules([str(Path(__file__).parent)]) if not i.name.startswith("_"))


def run() -> int:
    names = available()
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "list"):
        print("benchmarks (python -m bench NAME [--help]):")
        for n in names:
            # Read the docstring without importing (benchmarks import torch, Prefect, ...).
            doc = (ast.get_docstring(ast.parse((Path(__file__).parent / f"{n}.py").read_text())) or "").splitlines()
            print(f"  {n:<22} {doc[0] if doc else ''}")
        return 0
    name = sys.argv[1]
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {names}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    if not hasattr(module, "main"):
        print(f"bench/{name}.py has no main()", file=sys.stderr)
        return 2
    sys.argv = [f"bench/{name}.py", *sys.argv[2:]]
    return int(module.main() or 0)


if __name__ == "__main__":
    sys.exit(run())
