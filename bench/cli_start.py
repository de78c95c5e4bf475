"""Cold start of the CLI: `affectflow --help` and `affectflow store info` (median of 10 runs, wall s).

Each run is a fresh process (`python -m affectflow.cli ...`, what the console script runs), timed from
outside with a monotonic clock; 1 warm-up run is not counted. For comparison, the same process importing
torch alone (what every command paid before subcommands imported lazily). Written to
`bench/results/cli_start.md`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], runs: int) -> list[float]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i:  # the first run warms the page cache
            out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli_start.md"))
    args = ap.parse_args()

    store = Path(tempfile.mkdtemp(prefix="cli-start-"))
    subprocess.run([sys.executable, "-m", "affectflow.cli", "import", "default", "--store", str(store)], cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, check=True)
    py = [sys.executable, "-m", "affectflow.cli"]
    rows = {
        "affectflow --help": _time([*py, "--help"], args.runs),
        "affectflow store info STORE": _time([*py, "store", "info", str(store)], args.runs),
        "python -c 'import torch' (reference)": _time([sys.executable, "-c", "import torch"], args.runs),
    }
    lines = [f"# CLI cold start (median of {args.runs} runs, wall seconds; min-max)", "",
             "| command | median s | min-max s |", "|---|---|---|"]
    for name, ts in rows.items():
        lines.append(f"| `{name}` | {statistics.median(ts):.3f} | {min(ts):.3f}-{max(ts):.3f} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
