"""Peak memory of ``affectflow extract`` from 10 to 1,000 items: flat, because each item is written as it finishes.

A corpus of N short synthetic clips is generated with PyAV (1 s each: a 160x120 moving pattern at 25 fps
and a 16 kHz tone whose pitch varies per clip, so no two files are equal), with a transcript per clip.
Each size runs ``affectflow extract`` (text: GloVe, audio: eGeMAPS functionals; video optional with
``--video``) in its own fresh process, with a fresh store, and reports that process's peak RSS
(``ru_maxrss``), its wall time, and the Parquet row groups written (one per item).

    .venv/bin/python bench/extract_memory.py                      # 10, 100, 1000 -> bench/results/extract_memory.{json,md}
    .venv/bin/python bench/extract_memory.py --sizes 10 100 --video
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORDS = ["good", "bad", "movie", "acting", "great", "plot", "boring", "fun", "story", "actor", "music", "scene"]


def make_clip(path: Path, k: int, seconds: float = 1.0, fps: int = 25, sr: int = 16000) -> None:
    """A short MP4 (H.264 + AAC) whose frames and tone depend on ``k``."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        a = out.add_stream("aac", rate=sr)
        a.layout = "mono"
        yy, xx = np.mgrid[0:120, 0:160]
        for i in range(int(seconds * fps)):
            img = ((xx + 3 * i + k) % 256).astype(np.uint8)[..., None].repeat(3, axis=2)
            img[..., 1] = (yy + k) % 256
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        t = np.arange(int(seconds * sr)) / sr
        wave = (0.3 * np.sin(2 * np.pi * (150 + 5 * (k % 60)) * t)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate = sr
            for p in a.encode(frame):
                out.mux(p)
        for s in (v, a):
            for p in s.encode():
                out.mux(p)


def make_corpus(root: Path, n: int) -> Path:
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        make_clip(root / f"c{k:04d}.mp4", k)
        words = " ".join(WORDS[(k + j) % len(WORDS)] for j in range(6))
        rows.append({"path": f"c{k:04d}.mp4", "transcript": words, "score": float(k % 5) - 2.0,
                     "split": "train" if k % 5 else "valid"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def child(argv: list[str]) -> None:
    """Run the CLI in this process, then print its peak RSS (MiB) as the last line."""
    from affectflow.cli import main as cli

    rc = cli(argv)
    print(json.dumps({"rc": rc, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_size(work: Path, n: int, video: bool) -> dict:
    import pyarrow.parquet as pq

    corpus = make_corpus(work / f"corpus{n}", n)
    cfg = work / "extract.json"
    cfg.write_text(json.dumps({"text": [{"name": "glove"}], "audio": [{"name": "egemaps"}],
                               "video": [{"name": "facet"}] if video else [], "fps": 5.0}))
    store = work / f"store{n}"
    argv = ["extract", str(corpus), "--dataset", "synth", "--store", str(store), "--config", str(cfg),
            "--no-progress", "--json"]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"extract of {n} items failed:\n{res.stderr[-3000:]}")
    last = json.loads(res.stdout.strip().splitlines()[-1])
    summary = json.loads(res.stdout[: res.stdout.rstrip().rfind("\n")])
    return {"items": n, "segments": summary["n_segments"], "peak_rss_mib": round(last["peak_rss_mib"], 1),
            "wall_s": round(wall, 1), "items_done": summary["items_done"],
            "row_groups": pq.ParquetFile(store / "synth" / "extracted.parquet").num_row_groups}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--video", action="store_true", help="also extract facet features")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_size(Path(tmp), n, args.video) for n in args.sizes]
    base = rows[0]["peak_rss_mib"]
    for r in rows:
        r["rss_vs_smallest"] = round(r["peak_rss_mib"] / base, 3)
    mods = "text+audio+video" if args.video else "text+audio"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "extract_memory.json").write_text(json.dumps({"modalities": mods, "rows": rows}, indent=2))
    lines = [f"Peak RSS of `affectflow extract` ({mods}, 1 s synthetic clips, one fresh process per size)", "",
             "| items | segments | peak RSS (MiB) | vs smallest | wall (s) | row groups |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['items']} | {r['segments']} | {r['peak_rss_mib']} | {r['rss_vs_smallest']} | {r['wall_s']} | "
              f"{r['row_groups']} |" for r in rows]
    (RESULTS / "extract_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
