"""Extraction speed on the shared clips (+ MOUD): realtime factor per modality and overall, peak memory,
cold start, decoding alone as the floor; and text-only MOSI accuracy of our text features.

Each stage runs in its own fresh process, through the real driver (``pipeline.extract.extract_item`` on
every item, then ``write_extracted``), so its peak RSS and cold start are its own. Realtime factor =
seconds of media / seconds of wall time of the *whole process* (interpreter start to exit, imports and
model loading included); a CPU-time factor is printed too, because this 2-core machine is shared and
wall time under load says as much about the neighbours as about the code. Cold start = process start
to the first item's features (imports + corpus + lazy model loading), and "ready" = to the first item's
start (imports only). The MMSA-FET reference (38 clips, 227 s, 2-core machine): eGeMAPS functionals +
face-mesh landmarks at 25 fps + GloVe at 3.9x realtime, 1.75-4 GB, 4-6 s of import.

    .venv/bin/python bench/extract_speed.py                 # speed table -> bench/results/extract_speed.{json,md}
    .venv/bin/python bench/extract_speed.py --fps 10        # visual frames sampled at 10 fps instead of 25
    .venv/bin/python bench/extract_speed.py --mosi          # + text-only MOSI valid accuracy (honest-mosi)
    .venv/bin/python bench/extract_speed.py --child all     # one stage, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFFECTFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
# stage -> modalities extracted (decode = decoding alone: audio once + RGB frames at the bench fps)
STAGES = {"decode": (), "text": ("text",), "audio": ("audio",), "video": ("video",), "all": ("text", "audio", "video")}


def corpus():
    """The shared clips + the MOUD video (with its 5 utterances), as one in-memory corpus rooted at SHARED."""
    import pandas as pd

    from pipeline.corpus import corpus_from_rows

    man = pd.read_csv(SHARED / "clips" / "manifest.csv")
    rows = [{"path": f"clips/{r.path}", "transcript": str(r.transcript).split("  [")[0] if isinstance(r.transcript, str) else None}
            for r in man.itertuples()]
    utt = pd.read_csv(SHARED / "moud" / "transcriptions" / "101_movies.csv", sep=";")
    for i, r in utt.iterrows():
        rows.append({"path": "moud/101_movies.mp4", "video_id": "moud/101_movies", "segment_id": f"moud101_{i}",
                     "start": r["#starttime"], "end": r["#endtime"], "transcript": r["transcription"]})
    return corpus_from_rows(SHARED, rows)


def _usage() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_maxrss / 1024


def child(stage: str, fps: float) -> dict:
    from pipeline.errors import ItemError

    c = corpus()
    ready = time.perf_counter() - T_START
    first = None
    media_s, done, quarantined = 0.0, 0, 0
    per_col: dict[str, float] = {}
    if stage == "decode":
        from pipeline.media import open_media

        for it in c.items:
            try:
                m = open_media(it.path, fps=fps, item=it.item_id)
                if m.has_audio:
                    m.audio(allow_silent=True)
                if m.has_video:
                    for _ in m.frames():
                        pass
                media_s += m.duration
                done += 1
            except ItemError:
                quarantined += 1
            first = first or time.perf_counter() - T_START
    else:
        from pipeline.assemble import write_extracted
        from pipeline.extract import ExtractConfig, extract_item

        full = ExtractConfig(fps=fps)
        # visual extractors sample frames themselves: the face tracker's own rate is set to the bench fps
        video = [s.model_copy(update={"config": {**s.config, "track": {"fps": fps}}}) if s.name == "facet" else s
                 for s in full.video]
        full = full.model_copy(update={"video": video})
        cfg = ExtractConfig(fps=fps, **{m: [x.model_dump() for x in getattr(full, m)] if m in STAGES[stage] else []
                                        for m in ("text", "audio", "video")})
        results = []
        for it in c.items:
            r = extract_item(it, cfg)
            results.append(r)
            media_s += r.media_seconds
            done += bool(r.vectors)
            quarantined += bool(r.quarantine)
            for k, v in r.seconds.items():
                per_col[k] = per_col.get(k, 0.0) + v
            first = first or time.perf_counter() - T_START
        with tempfile.TemporaryDirectory() as store:
            write_extracted(results, store=store, dataset="bench", cfg=cfg)
    cpu, rss = _usage()
    return {"stage": stage, "fps": fps, "items": len(c.items), "items_with_features": done,
            "items_with_quarantine": quarantined, "media_seconds": round(media_s, 2),
            "wall_in_process_s": round(time.perf_counter() - T_START, 3), "cpu_seconds": round(cpu, 2),
            "ready_s": round(ready, 3), "cold_start_s": round(first or 0.0, 3), "peak_rss_mb": round(rss, 1),
            "seconds_per_column": {k: round(v, 2) for k, v in per_col.items()}}


def run_stage(stage: str, fps: float) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", stage, "--fps", str(fps)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["wall_process_s"] = round(wall, 3)
    r["realtime_factor_wall"] = round(r["media_seconds"] / wall, 2)
    r["realtime_factor_cpu"] = round(r["media_seconds"] / max(r["cpu_seconds"], 1e-9), 2)
    return r


# ------------------------------------------------------------------------------------------ MOSI text


def mosi_text(work: Path) -> dict:
    """Text-only valid accuracy (honest-mosi) of our text features vs the published text-CNN features."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pipeline.engine import extract_corpus
    from pipeline.extract import ExtractConfig, ExtractorSpec
    from pipeline.store import read_feature_set
    from pipeline.text_cnn import TextCNNConfig, train_text_cnn

    out: dict = {}
    store = work / "store"

    def logreg(x, seg) -> dict:
        tr, va = (seg["split"] == "train").to_numpy(), (seg["split"] == "valid").to_numpy()
        y = seg["label_bin"].to_numpy().astype(int)
        sc = StandardScaler().fit(x[tr])
        accs = {c: LogisticRegression(C=c, max_iter=3000).fit(sc.transform(x[tr]), y[tr]).score(sc.transform(x[va]), y[va])
                for c in (0.001, 0.01, 0.1, 1.0)}
        best = max(accs, key=accs.get)
        return {"valid_accuracy": round(accs[best], 4), "C_chosen_on_valid": best, "all": {str(k): round(v, 4) for k, v in accs.items()}}

    t0 = time.perf_counter()
    cfg = ExtractConfig(text=[ExtractorSpec(name="glove", keep_sequence=True)], audio=[], video=[])
    s = extract_corpus(SHARED / "mosi" / "segments.csv", store=store, dataset="mosi", cfg=cfg,
                       feature_set="glove", progress=False)
    out["extract_seconds"] = round(time.perf_counter() - t0, 2)
    fs = read_feature_set(store, "mosi", "glove")
    out["oov"] = fs.meta.extra["oov"]["text"]
    out["glove_pooled_logreg"] = logreg(fs.features["text"], fs.segments)
    t0 = time.perf_counter()
    res = train_text_cnn(TextCNNConfig(), store=store, dataset="mosi", words_feature_set="glove.seq",
                         out_feature_set="glove-textcnn")
    out["textcnn_seconds"] = round(time.perf_counter() - t0, 2)
    out["glove_textcnn_direct"] = res
    tc = read_feature_set(store, "mosi", "glove-textcnn")
    out["glove_textcnn_logreg"] = logreg(tc.features["text"], tc.segments)
    z = np.load(SHARED / "mosi" / "bclstm_raw_features.dev.npz", allow_pickle=False)
    import pandas as pd

    seg = pd.DataFrame({"split": z["split"], "label_bin": z["label_bin"]})
    out["published_textcnn_logreg"] = logreg(z["text"], seg)
    out["valid_majority"] = round(float((seg[seg.split == "valid"].label_bin == 1).mean()), 4)
    out["summary"] = s.model_dump()
    return out


def clean_chain(work: Path, seed: int = 0) -> dict:
    """Our text (GloVe text-CNN, trained on train videos only) + published openSMILE audio -> UCLN -> ARGF.

    ARGF needs three modalities; the only visual features for MOSI are the published 3D-CNN ones, which
    are label-leaky on the train videos (clean on valid), so a row with them is given next to the
    leakage-free two-modality rows (logistic regression on raw and on UCLN-context text + audio).
    """
    from pipeline.baselines import run_baseline
    from pipeline.context import train_ucln_per_modality
    from pipeline.evaluate import evaluate_run
    from pipeline.importers.table import import_embedded_default
    from pipeline.train import TrainConfig, train

    store = work / "store"
    if not (store / "mosi" / "glove-textcnn.parquet").is_file():
        mosi_text(work)
    import_embedded_default(store)
    out: dict = {}

    def lr(name: str, features: dict) -> None:
        r = run_baseline("logreg", store=store, dataset="mosi", features=features)
        out[name] = {"valid_accuracy": round(r["valid"]["accuracy"], 4), "valid_f1w": round(r["valid"]["f1_weighted"], 4),
                     "chosen": r["chosen"]}

    lr("logreg_raw_pub_text+pub_audio", {"text": "bclstm-raw", "audio": "bclstm-raw"})
    # text-CNN (trained on train labels) and the label-free pooled GloVe: the fully leakage-free text
    for text, tag in (("glove-textcnn", "textcnn"), ("glove", "pooled")):
        ours = {"text": text, "audio": "bclstm-raw"}
        lr(f"logreg_raw_ours_{tag}_text+pub_audio", ours)
        ucln = TrainConfig(model="ucln", seed=seed, epochs=40, patience=8, batch_size=10)
        t0 = time.perf_counter()
        train_ucln_per_modality(ucln, store=store, dataset="mosi", features={**ours, "video": "bclstm-raw"},
                                out_dir=work / f"ucln-{tag}", write_context=f"clean-context-{tag}", progress=None)
        out[f"ucln_seconds_{tag}"] = round(time.perf_counter() - t0, 1)
        ctx = f"clean-context-{tag}"
        lr(f"logreg_ucln_context_ours_{tag}_text+pub_audio", {"text": ctx, "audio": ctx})
        t0 = time.perf_counter()
        cfg = TrainConfig(model="argf", model_cfg={"target": "text"}, seed=seed, epochs=30, patience=6, batch_size=32)
        train(cfg, store=store, dataset="mosi", features=ctx, out_dir=work / f"argf-{tag}", progress=None)
        ev = evaluate_run(work / f"argf-{tag}", "valid")
        out[f"argf_ours_{tag}_text+pub_audio+pub_video(leaky train)"] = {
            "valid_accuracy": round(ev["accuracy"], 4), "valid_f1w": round(ev["f1_weighted"], 4),
            "best_epoch": ev.get("best_epoch"), "seconds": round(time.perf_counter() - t0, 1)}
    return out


def render_text(res: dict) -> list[str]:
    """The MOSI text-only and clean-chain tables (when present)."""
    lines: list[str] = []
    if "mosi" in res:
        m = res["mosi"]
        lines += ["", "## Text-only MOSI, honest-mosi valid (240 utterances, 62.1% positive)", "",
                  "| features | valid accuracy |", "|---|---|",
                  f"| GloVe 6B.50d mean-pooled (from segments.csv transcripts), logistic regression | {m['glove_pooled_logreg']['valid_accuracy']:.4f} |",
                  f"| text-CNN over our GloVe word sequences (trained on train, early-stopped on valid) | {m['glove_textcnn_direct']['valid_accuracy']:.4f} |",
                  f"| its 100-d penultimate features, logistic regression | {m['glove_textcnn_logreg']['valid_accuracy']:.4f} |",
                  f"| published bc-LSTM text-CNN features (100-d), logistic regression | {m['published_textcnn_logreg']['valid_accuracy']:.4f} |",
                  f"| majority class | {m['valid_majority']:.4f} |"]
    if "chain" in res:
        lines += ["", "## Clean chain, honest-mosi valid (one seed)", "", "| row | valid accuracy | valid F1w |", "|---|---|---|"]
        for k, v in res["chain"].items():
            if isinstance(v, dict):
                lines.append(f"| {k} | {v['valid_accuracy']:.4f} | {v['valid_f1w']:.4f} |")
    return lines


def render(res: dict) -> str:
    lines = [f"# Extraction speed ({res['cpus']} CPUs, load average {res['load_average'][0]:.1f} at start, "
             f"{res['date']})", "",
             "| stage | fps | items (features / quarantine) | media s | process wall s | realtime x (wall) | "
             "realtime x (CPU) | peak RSS MB | ready s | cold start s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["stages"]:
        lines.append(f"| {r['stage']} | {r['fps']:g} | {r['items']} ({r['items_with_features']} / {r['items_with_quarantine']}) | "
                     f"{r['media_seconds']:.1f} | {r['wall_process_s']:.1f} | {r['realtime_factor_wall']:.1f} | "
                     f"{r['realtime_factor_cpu']:.1f} | {r['peak_rss_mb']:.0f} | {r['ready_s']:.2f} | {r['cold_start_s']:.2f} |")
    lines += render_text(res)
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=list(STAGES), help=argparse.SUPPRESS)
    ap.add_argument("--fps", type=float, default=25.0, help="frames per second for decoding/visual (MMSA-FET: 25)")
    ap.add_argument("--stages", nargs="*", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--mosi", action="store_true", help="also the text-only MOSI accuracy")
    ap.add_argument("--chain", action="store_true", help="only the clean MOSI chain (our text + published audio)")
    ap.add_argument("--out", type=Path, default=RESULTS / "extract_speed")
    a = ap.parse_args()
    if a.child:  # (no torch import here: it would add ~1 s to every cold start it measures)
        print(json.dumps(child(a.child, a.fps)))
        return 0
    if a.chain:
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as work:
            chain = {"date": time.strftime("%Y-%m-%d %H:%M"), "mosi": mosi_text(Path(work))}
            chain["chain"] = clean_chain(Path(work))
        (RESULTS / "extract_chain.json").write_text(json.dumps(chain, indent=1, default=str))
        (RESULTS / "extract_chain.md").write_text("\n".join(render_text(chain)) + "\n")
        print(json.dumps(chain["chain"], indent=1))
        return 0
    import psutil

    res = {"cpus": psutil.cpu_count(), "load_average": list(psutil.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M"),
           "stages": []}
    for st in a.stages:
        r = run_stage(st, a.fps)
        print(json.dumps(r), flush=True)
        res["stages"].append(r)
    if a.mosi:
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as work:
            res["mosi"] = mosi_text(Path(work))
        print(json.dumps({k: v for k, v in res["mosi"].items() if k != "summary"}, indent=1), flush=True)
    out = a.out.with_name(a.out.name + ("" if a.fps == 25.0 else f"_fps{a.fps:g}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
