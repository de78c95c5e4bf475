"""Realtime factor and memory of the visual extractors on the shared clips (2-core machine).

For every video under ``clips/`` (and the MOUD video), whole process, one thread:
* floor: decoding alone at the same sampling rate and size (``pipeline.media`` frames, gray),
* ``facet``: decode + detect/track + landmarks + Facet-style features,
* ``face_crops``: reuses the same tracking pass (what the driver gets when both run on one item).
Realtime factor = seconds of media / seconds of wall time. Also: cold start (imports + dlib models)
and peak resident memory. Variants: sampling rate and ``detect_every``.

    .venv/bin/python bench/visual_speed.py [--clips ../shared/data/clips] [--fps 5] [--detect-every 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "clips")
    ap.add_argument("--fps", type=float, default=None, help="default: the tracker's (25)")
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--detect-every", type=int, default=None, help="default: the tracker's")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "visual_speed.json")
    ap.add_argument("--repeat", type=int, default=1, help="best of N passes (the machine is shared)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from pipeline.errors import ItemError
    from pipeline.extractors.base import MediaItem
    from pipeline.extractors.face import FaceTrackConfig
    from pipeline.extractors.landmarks import models as _models
    from pipeline.extractors.registry import get_extractor
    from pipeline.media import open_media

    _models()
    cold = time.perf_counter() - t0
    track = FaceTrackConfig(**{k: v for k, v in {"fps": args.fps, "max_side": args.max_side,
                                                  "detect_every": args.detect_every}.items() if v is not None})
    facet = get_extractor("facet", track=track.model_dump())
    crops = get_extractor("face_crops", track=track.model_dump())
    paths = sorted(p for p in args.clips.glob("*/*") if p.suffix in {".mp4", ".mpg", ".mov", ".avi"})
    moud = args.clips.parent / "moud" / "101_movies.mp4"
    if moud.is_file():
        paths.append(moud)
    rows = []
    for p in paths:
        media = open_media(p)
        if not media.has_video:
            continue
        best_dec = best_all = cpu_dec = cpu_all = np.inf
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            n = sum(1 for _ in media.frames(fps=track.fps, max_side=track.max_side, fmt="gray"))
            best_dec, cpu_dec = min(best_dec, time.perf_counter() - t), min(cpu_dec, time.process_time() - c)
            item = MediaItem(p.stem, p, pd.DataFrame({"segment_id": [p.stem], "start": [np.nan], "end": [np.nan]}))
            t, c = time.perf_counter(), time.process_time()
            status, n_face = "ok", 0
            try:
                f = facet.extract(item, media).features
                crops.extract(item, media)  # cached tracking: the same pass
                n_face = len(f.values)
            except ItemError as e:
                status = str(e).split(": ", 1)[-1]
            best_all, cpu_all = min(best_all, time.perf_counter() - t), min(cpu_all, time.process_time() - c)
        rows.append({"clip": f"{p.parent.name}/{p.name}", "seconds": media.duration, "sampled": n, "with_face": n_face,
                     "decode_s": best_dec, "visual_s": best_all,
                     "decode_cpu_s": cpu_dec, "visual_cpu_s": cpu_all, "status": status})
    df = pd.DataFrame(rows)
    media_s = df["seconds"].sum()
    by_group = df.assign(group=df["clip"].str.split("/").str[0]).groupby("group")[["seconds", "decode_s", "visual_s"]].sum()
    by_group["decode_rtf"] = by_group["seconds"] / by_group["decode_s"]
    by_group["visual_rtf"] = by_group["seconds"] / by_group["visual_s"]
    summary = {
        "config": track.model_dump(), "clips": len(df), "media_seconds": round(media_s, 1),
        "decode_only_rtf": round(media_s / df["decode_s"].sum(), 1),
        "visual_rtf": round(media_s / df["visual_s"].sum(), 1),
        "decode_only_rtf_cpu": round(media_s / df["decode_cpu_s"].sum(), 1),
        "visual_rtf_cpu": round(media_s / df["visual_cpu_s"].sum(), 1),
        "visual_only_cost_rtf": round(media_s / (df["visual_s"].sum() - df["decode_s"].sum()), 1),
        "cold_start_s": round(cold, 2), "process_start_to_ready_s": round(t0 - T_START + cold, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "quarantined": df.loc[df["status"] != "ok", ["clip", "status"]].values.tolist(),
        "per_group_rtf": by_group[["decode_rtf", "visual_rtf"]].round(1).to_dict("index"),
    }
    if args.verbose:
        print(df.round(3).to_string(index=False))
    summary["load_average_at_end"] = list(__import__("os").getloadavg())
    summary["per_clip"] = df.round(4).to_dict("records")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_clip"}, indent=1))


if __name__ == "__main__":
    main()
