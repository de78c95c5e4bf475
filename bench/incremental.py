"""Incremental re-extraction benchmark: full run vs no-change re-run vs one-changed-video re-run.

Builds a corpus from the GRID clips in ../shared/data/clips (CC BY 4.0), runs the Prefect flow
``extract-corpus`` three times on the same store and reports, per run, the wall time and how many
videos were extracted vs served from the cache. A fourth run replaces one video's bytes with another
clip: exactly one video must be recomputed.

    .venv/bin/python bench/incremental.py [--clips ../shared/data/clips] [--n 10] [--fps 5] [--runner threads]

Results go to bench/results/incremental.{json,md}. Prefect state lives in a temporary PREFECT_HOME
(ephemeral server) unless PREFECT_API_URL points at a running server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_corpus(clips: Path, root: Path, n: int) -> list[Path]:
    import pandas as pd

    grid = sorted((clips / "grid_lipnet").glob("*.mpg"))
    if len(grid) < n + 1:
        raise SystemExit(f"need {n + 1} GRID clips in {clips / 'grid_lipnet'}, found {len(grid)}")
    rows = []
    for i, src in enumerate(grid[:n]):
        shutil.copy(src, root / src.name)
        rows.append({"path": src.name, "transcript": "bin blue at f two now", "score": float(i % 2) - 0.5,
                     "split": "train" if i < n - 2 else "valid"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "clips")
    ap.add_argument("--n", type=int, default=10, help="videos in the corpus (default 10)")
    ap.add_argument("--fps", type=float, default=5.0, help="frames per second for the visual extractor")
    ap.add_argument("--runner", choices=["threads", "dask"], default="threads")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="affectflow-incremental-"))
    from flows import configure_prefect

    configure_prefect(work / "prefect-home")
    from flows.extract_corpus import extract_corpus

    corpus = work / "corpus"
    corpus.mkdir()
    grid = build_corpus(args.clips, corpus, args.n)
    store = work / "store"
    orch = {"task_runner": args.runner, "max_workers": args.workers, "dask_workers": args.workers}
    extract = {"fps": args.fps}

    def one(label: str) -> dict:
        t0 = time.perf_counter()
        s = extract_corpus(corpus=str(corpus), store=str(store), dataset="grid", extract=extract, orchestration=orch)
        row = {"run": label, "wall_s": round(time.perf_counter() - t0, 2), "videos": s["n_items"],
               "extracted": s["n_computed"], "cached": s["n_cached"], "failed": s["n_failed"]}
        print(json.dumps(row), flush=True)
        return row

    rows = [one("warm-up (starts Prefect; full extraction)")]
    shutil.rmtree(store)  # measure the full run with Prefect already up
    rows.append(one("full"))
    rows.append(one("no change"))
    changed = sorted(corpus.glob("*.mpg"))[0]
    shutil.copy(grid[args.n], changed)  # new bytes for one video (another real clip)
    rows.append(one(f"one video changed ({changed.name})"))
    rows.append(one("no change again"))

    result = {"videos": args.n, "fps": args.fps, "runner": args.runner, "workers": args.workers,
              "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "incremental.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Incremental extraction ({args.n} GRID videos, fps {args.fps}, {args.runner} x{args.workers})", "",
             "| run | wall s | extracted | from cache | failed |", "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['wall_s']} | {r['extracted']} | {r['cached']} | {r['failed']} |" for r in rows]
    lines.append(f"\nmachine: {os.cpu_count()} cores, 1-min load average {os.getloadavg()[0]:.1f} at the end")
    (args.out / "incremental.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
