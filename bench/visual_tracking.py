"""What tracking landmarks by optical flow costs in accuracy: flow-tracked landmarks against fitting
every frame, per shared clip (+ the MOUD video), at 25 fps.

Reference: ``refit_every=1`` (the 68-point fit on every sampled frame). Tracked: ``refit_every=N``
(fit every N frames and whenever the flow degrades; Lucas-Kanade in between). Error per frame = mean
point distance over the reference's inter-ocular distance, on the frames where both have a face;
per clip: mean and 95th percentile over frames, and the error on the flow frames only. Also the CPU time
of each (decode + tracking; one thread), the share of flow frames, and, as a yardstick, the error of
the old 5 fps default seen at 25 fps (each frame given the per-frame fit of the last 5-fps sample:
sample-and-hold).

    .venv/bin/python bench/visual_tracking.py [--refit 3 5 10] [--fps 25]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ItemError
from pipeline.extractors.base import MediaItem
from pipeline.extractors.face import FaceTrack, FaceTrackConfig, track_faces
from pipeline.extractors.landmarks import inter_ocular, models

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFFECTFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))


def clip_paths(clips: Path) -> list[Path]:
    paths = sorted(p for p in clips.glob("*/*") if p.suffix in {".mp4", ".mpg", ".mov", ".avi"})
    moud = clips.parent / "moud" / "101_movies.mp4"
    return paths + ([moud] if moud.is_file() else [])


def timed_track(path: Path, cfg: FaceTrackConfig) -> tuple[FaceTrack | None, float]:
    item = MediaItem(path.stem, path, pd.DataFrame({"segment_id": [path.stem], "start": [np.nan], "end": [np.nan]}))
    t = time.process_time()
    try:
        track = track_faces(item, None, cfg)
    except ItemError:
        track = None
    return track, time.process_time() - t


def landmark_error(ref: FaceTrack, other: FaceTrack) -> dict:
    """Per-frame mean point distance / reference IOD, on the frames where both found the face."""
    at = {round(f.time, 4): f for f in other.frames}
    errs, flow_errs = [], []
    for f in ref.frames:
        g = at.get(round(f.time, 4))
        if g is None:
            continue
        e = float(np.linalg.norm(g.landmarks - f.landmarks, axis=1).mean() / max(inter_ocular(f.landmarks), 1e-6))
        errs.append(e)
        if g.source == "flow":
            flow_errs.append(e)
    return {"frames_compared": len(errs), "mean_err_iod": float(np.mean(errs)) if errs else float("nan"),
            "p95_err_iod": float(np.percentile(errs, 95)) if errs else float("nan"),
            "flow_mean_err_iod": float(np.mean(flow_errs)) if flow_errs else float("nan")}


def hold_error(ref: FaceTrack, every: int) -> float:
    """Mean error of holding every ``every``-th per-frame fit over the frames in between."""
    errs = []
    for i, f in enumerate(ref.frames):
        held = ref.frames[i - i % every]
        errs.append(float(np.linalg.norm(held.landmarks - f.landmarks, axis=1).mean() / max(inter_ocular(f.landmarks), 1e-6)))
    return float(np.mean(errs)) if errs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=SHARED / "clips")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--refit", type=int, nargs="+", default=[5])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "visual_tracking.json")
    args = ap.parse_args()
    models()  # model loading is not what this measures
    rows = []
    for path in clip_paths(args.clips):
        ref, cpu_ref = timed_track(path, FaceTrackConfig(fps=args.fps, refit_every=1))
        row = {"clip": f"{path.parent.name}/{path.name}", "sampled": 0 if ref is None else ref.n_sampled,
               "face_frames_ref": 0 if ref is None else len(ref.frames), "cpu_s_ref": round(cpu_ref, 3),
               "hold5fps_err_iod": round(hold_error(ref, 5), 4) if ref is not None else None}
        for n in args.refit:
            tr, cpu = timed_track(path, FaceTrackConfig(fps=args.fps, refit_every=n))
            row[f"cpu_s_refit{n}"] = round(cpu, 3)
            if ref is None or tr is None:
                row[f"face_frames_refit{n}"] = 0 if tr is None else len(tr.frames)
                continue
            row[f"face_frames_refit{n}"] = len(tr.frames)
            row[f"flow_share_refit{n}"] = round(sum(f.source == "flow" for f in tr.frames) / max(len(tr.frames), 1), 3)
            row.update({f"{k}_refit{n}": round(v, 4) if isinstance(v, float) else v
                        for k, v in landmark_error(ref, tr).items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    summary: dict = {"fps": args.fps, "clips": len(df), "cpu_s_ref": round(df["cpu_s_ref"].sum(), 2),
                     "median_clip_hold5fps_err_iod": round(float(df["hold5fps_err_iod"].median()), 4),
                     "load_average": list(os.getloadavg())}
    for n in args.refit:
        ok = df[f"mean_err_iod_refit{n}"].notna() if f"mean_err_iod_refit{n}" in df else df["clip"].isna()
        summary[f"refit{n}"] = {
            "cpu_s": round(df[f"cpu_s_refit{n}"].sum(), 2),
            "speedup_vs_every_frame": round(df["cpu_s_ref"].sum() / df[f"cpu_s_refit{n}"].sum(), 2),
            "median_clip_mean_err_iod": round(float(df.loc[ok, f"mean_err_iod_refit{n}"].median()), 4),
            "worst_clip_mean_err_iod": round(float(df.loc[ok, f"mean_err_iod_refit{n}"].max()), 4),
            "median_clip_p95_err_iod": round(float(df.loc[ok, f"p95_err_iod_refit{n}"].median()), 4),
            "face_frames": int(df[f"face_frames_refit{n}"].sum()), "face_frames_ref": int(df["face_frames_ref"].sum()),
        }
    group = df["clip"].str.split("/").str[0]
    summary["per_group_median_clip_mean_err_iod"] = {
        g: {c.replace("mean_err_iod_", ""): round(float(v), 4) for c, v in
            df[group == g][[f"mean_err_iod_refit{n}" for n in args.refit if f"mean_err_iod_refit{n}" in df]
                           + ["hold5fps_err_iod"]].median().items()}
        for g in sorted(set(group))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "per_clip": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
