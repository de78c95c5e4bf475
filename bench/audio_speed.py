"""Decoding and audio-extractor speed on the shared clips: realtime factor, CPU time, peak memory, cold start.

Each stage runs in its own fresh process (so peak RSS and cold start are that stage's alone), over every
shared clip plus the MOUD video; a clip that cannot give the stage its input (no audio stream, silent
track) is counted as quarantined, not timed. Realtime factor = seconds of media / seconds of wall time
for the whole stage, decoding included. CPU-time factors are printed too: the machine is shared, and
wall time under load says more about the neighbours than about the code.

    .venv/bin/python bench/audio_speed.py            # all stages, table + bench/results/audio_speed.json
    .venv/bin/python bench/audio_speed.py --stage covarep   # one stage, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFFECTFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))

STAGES = {
    # name: (what, extractor name, extractor config)
    "decode_audio": ("audio", None, {}),
    "decode_frames25": ("frames", None, {}),
    "decode_both": ("both", None, {}),
    "egemaps": ("extract", "egemaps", {}),
    "egemaps_lld": ("extract", "egemaps", {"level": "lld"}),
    "compare2016": ("extract", "compare2016", {}),
    "covarep": ("extract", "covarep", {}),
    "covarep_no_glottal": ("extract", "covarep", {"glottal": False}),
}


def clips() -> list[Path]:
    import pandas as pd

    man = pd.read_csv(SHARED / "clips" / "manifest.csv")
    return [SHARED / "clips" / p for p in man["path"]] + [SHARED / "moud" / "101_movies.mp4"]


def run_stage(stage: str) -> dict:
    import numpy as np
    import pandas as pd

    from pipeline.errors import ItemError
    from pipeline.extractors.base import MediaItem
    from pipeline.extractors.registry import get_extractor
    from pipeline.media import open_media

    what, name, cfg = STAGES[stage]
    ex = get_extractor(name, **cfg) if name else None
    t_import = time.perf_counter() - T_START
    media_s, done, quarantined, first_result = 0.0, 0, 0, None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for path in clips():
        try:
            m = open_media(path, fps=25, max_side=320, item=path.name)
            if what in ("audio", "extract"):
                m.audio()
            if what == "both" and m.has_audio:
                m.audio(allow_silent=True)  # the decode floor of the whole pipeline: every stream, every clip
            if what in ("frames", "both"):
                for _ in m.frames():
                    pass
            if ex is not None:
                seg = pd.DataFrame({"segment_id": [path.stem], "segment_index": [0], "start": [np.nan],
                                    "end": [np.nan], "transcript": [""]})
                ex.extract(MediaItem(path.stem, path, seg), m)
        except ItemError:
            quarantined += 1
            continue
        done += 1
        media_s += m.duration
        if first_result is None:
            first_result = time.perf_counter() - T_START
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "stage": stage, "clips_done": done, "clips_quarantined": quarantined, "media_seconds": round(media_s, 2),
        "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "realtime_factor_wall": round(media_s / wall, 1), "realtime_factor_cpu": round(media_s / cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cold_start_seconds": round(t_import, 2),
        "first_result_seconds": None if first_result is None else round(first_result, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=sorted(STAGES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "audio_speed.json")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage)))
        return
    rows = []
    for stage in STAGES:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, __file__, "--stage", stage], capture_output=True, text=True,
                             env=env, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{stage:20s} {r['clips_done']:3d} clips ({r['clips_quarantined']} quarantined) "
              f"{r['media_seconds']:7.1f} s media  wall {r['realtime_factor_wall']:6.1f}x  "
              f"cpu {r['realtime_factor_cpu']:6.1f}x  peak {r['peak_rss_mb']:6.0f} MB  "
              f"cold start {r['cold_start_seconds']:.2f} s", flush=True)
    load = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load_average": load, "cpus": os.cpu_count(), "stages": rows}, indent=1))
    print(f"load average during the run: {load[0]:.1f} on {os.cpu_count()} cores; written {args.out}")


if __name__ == "__main__":
    main()
