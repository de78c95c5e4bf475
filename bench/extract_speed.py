"""Extraction speed on the shared clips (+ MOUD), every configuration in ONE run: realtime factors (wall
and CPU), the ratio to decoding alone, and the peak memory of the whole process tree; and, on request,
text-only MOSI accuracy of our text features and the clean MOSI chain.

Each configuration is a fresh process running the real corpus driver (``pipeline.engine.extract_corpus``,
what ``affectflow extract`` calls) on a copy of the 51 media files (50 shared clips + the MOUD video with
its 5 utterances) under a manifest; ``workers`` > 1 spawns the driver's worker processes, so the memory
measured is the sum of the resident memory of the whole tree (sampled every 50 ms; PSS, which counts
shared pages once, beside it). Realtime factor = seconds of media / wall seconds of the whole process
(interpreter start to exit: imports, model loading and the store write included). The decode floor is
what extraction decodes: audio once at 16 kHz + every frame at 25 fps as gray at the tracker's 320 px.
The machine is shared: compare configurations by their ratio to the floor measured in the same run.

    .venv/bin/python bench/extract_speed.py                 # -> bench/results/extract_speed.{json,md}
    .venv/bin/python bench/extract_speed.py --mosi          # + text-only MOSI valid accuracy (honest-mosi)
    .venv/bin/python bench/extract_speed.py --chain         # only the clean MOSI chain
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFFECTFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
# (name, modalities, video fps, workers); decode = decoding alone (the floor)
CONFIGS = [
    ("decode", (), 25.0, 1),
    ("text", ("text",), 25.0, 1),
    ("audio", ("audio",), 25.0, 1),
    ("video 25 fps", ("video",), 25.0, 1),
    ("video 5 fps", ("video",), 5.0, 1),
    ("all, video 25 fps, 1 worker", ("text", "audio", "video"), 25.0, 1),
    ("all, video 25 fps, 2 workers", ("text", "audio", "video"), 25.0, 2),
]


def write_corpus(dest: Path) -> Path:
    """The shared clips + the MOUD video copied under ``dest`` with a manifest (a corpus's files must
    lie inside its folder), one row per clip and one per MOUD utterance."""
    import pandas as pd

    man = pd.read_csv(SHARED / "clips" / "manifest.csv")
    rows = [{"path": f"clips/{r.path}", "video_id": f"clips/{r.path}", "segment_id": r.path,
             "transcript": str(r.transcript).split("  [")[0] if isinstance(r.transcript, str) else None}
            for r in man.itertuples()]
    utt = pd.read_csv(SHARED / "moud" / "transcriptions" / "101_movies.csv", sep=";")
    for i, r in utt.iterrows():
        rows.append({"path": "moud/101_movies.mp4", "video_id": "moud/101_movies", "segment_id": f"moud101_{i}",
                     "start": r["#starttime"], "end": r["#endtime"], "transcript": r["transcription"]})
    for rel in {r["path"] for r in rows}:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED / rel, dest / rel)
    pd.DataFrame(rows).to_csv(dest / "manifest.csv", index=False)
    return dest / "manifest.csv"


def child_decode(manifest: Path, fps: float) -> dict:
    """Decoding alone: every item's audio at 16 kHz and its frames as gray at 320 px, at ``fps``."""
    import pandas as pd

    from pipeline.errors import ItemError
    from pipeline.extractors.face import FaceTrackConfig
    from pipeline.media import open_media

    side = FaceTrackConfig().max_side
    media_s = 0.0
    for rel in pd.read_csv(manifest)["path"].unique():
        m = open_media(manifest.parent / rel)
        try:
            if m.has_audio:
                m.audio(allow_silent=True)
            for _ in m.frames(fps=fps, max_side=side, fmt="gray"):
                pass
        except ItemError:
            pass
        media_s += m.duration
    return {"media_seconds": media_s}


def child_extract(manifest: Path, modalities: list[str], fps: float, workers: int, store: Path) -> dict:
    from pipeline.engine import extract_corpus, local_mapper
    from pipeline.extract import ExtractConfig

    full = ExtractConfig()
    video = [s.model_copy(update={"config": {**s.config, "track": {"fps": fps}}}) for s in full.video]
    cfg = ExtractConfig(**{"text": full.text, "audio": full.audio, "video": video,
                           **{m: [] for m in ("text", "audio", "video") if m not in modalities}})
    s = extract_corpus(manifest, store=store, dataset="bench", cfg=cfg, mapper=local_mapper(workers))
    return {"media_seconds": s.media_seconds, "items": s.n_items, "items_done": s.items_done,
            "items_quarantined": s.items_quarantined, "seconds_per_column": s.seconds_per_column}


def _tree_memory(pid: int, peak: dict, stop: threading.Event) -> None:
    """Peak of the summed RSS (and PSS) of a process and all its descendants, sampled every 50 ms."""
    import psutil

    root = psutil.Process(pid)
    while not stop.is_set():
        rss = pss = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    rss, pss = rss + info.rss, pss + info.pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        except psutil.NoSuchProcess:
            return
        peak["rss"], peak["pss"] = max(peak.get("rss", 0), rss), max(peak.get("pss", 0), pss)
        stop.wait(0.05)


def run_config(name: str, modalities: tuple, fps: float, workers: int, manifest: Path, work: Path) -> dict:
    store = work / f"store-{len(list(work.glob('store-*')))}"
    args = [sys.executable, __file__, "--child", json.dumps([list(modalities), fps, workers, str(manifest), str(store)])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak: dict = {}
    stop = threading.Event()
    mon = threading.Thread(target=_tree_memory, args=(proc.pid, peak, stop), daemon=True)
    mon.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    mon.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{err[-3000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"config": name, "modalities": list(modalities), "fps": fps, "workers": workers, **r,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "realtime_wall": round(r["media_seconds"] / wall, 2), "realtime_cpu": round(r["media_seconds"] / cpu, 2),
            "peak_tree_rss_mb": round(peak.get("rss", 0) / 2**20), "peak_tree_pss_mb": round(peak.get("pss", 0) / 2**20),
            "load_average": [round(x, 1) for x in os.getloadavg()]}


def speed(configs: list[tuple]) -> dict:
    res: dict = {"cpus": os.cpu_count(), "load_average_start": [round(x, 1) for x in os.getloadavg()],
                 "date": time.strftime("%Y-%m-%d %H:%M"), "configs": []}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_corpus(Path(tmp) / "corpus")
        for c in configs:
            r = run_config(*c, manifest, Path(tmp))
            print(json.dumps(r), flush=True)
            res["configs"].append(r)
    floor = next((r for r in res["configs"] if r["config"] == "decode"), None)
    for r in res["configs"]:
        r["x_decode_only"] = round(r["realtime_wall"] / floor["realtime_wall"], 3) if floor else None
    res["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    return res


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
                       feature_set="glove")
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
    lines = [f"# Extraction speed ({res['cpus']} CPUs, load average {res['load_average_start'][0]:.1f} at start, "
             f"{res['load_average_end'][0]:.1f} at end, {res['date']})", "",
             "| configuration | workers | media s | wall s | realtime x (wall) | / decode-only | realtime x (CPU) | "
             "peak memory, process tree (RSS / PSS MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["configs"]:
        lines.append(f"| {r['config']} | {r['workers']} | {r['media_seconds']:.1f} | {r['wall_s']:.1f} | "
                     f"{r['realtime_wall']:.1f} | {r['x_decode_only'] or float('nan'):.2f} | {r['realtime_cpu']:.1f} | "
                     f"{r['peak_tree_rss_mb']} / {r['peak_tree_pss_mb']} |")
    lines += render_text(res)
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--configs", nargs="*", help="run only these configurations (names as in the table)")
    ap.add_argument("--mosi", action="store_true", help="also the text-only MOSI accuracy")
    ap.add_argument("--chain", action="store_true", help="only the clean MOSI chain (our text + published audio)")
    ap.add_argument("--out", type=Path, default=RESULTS / "extract_speed")
    a = ap.parse_args()
    if a.child:  # one configuration, JSON on stdout (no torch import: it is not what extraction pays)
        modalities, fps, workers, manifest, store = json.loads(a.child)
        r = (child_decode(Path(manifest), fps) if not modalities
             else child_extract(Path(manifest), modalities, fps, workers, Path(store)))
        print(json.dumps(r))
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
    res = speed([c for c in CONFIGS if not a.configs or c[0] in a.configs])
    if a.mosi:
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as work:
            res["mosi"] = mosi_text(Path(work))
        print(json.dumps({k: v for k, v in res["mosi"].items() if k != "summary"}, indent=1), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    a.out.with_suffix(".md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
