"""A clean MOSI chain, measured: every learned feature honest (issue 13), against the in-sample chain.

Inputs: text extracted by the project from the shipped transcripts (GloVe 6B.50d word sequences ->
text-CNN trained on the training labels; GloVe mean-pooled, which uses no label) and the published
openSMILE audio, the one published modality that is not fitted to the training labels. ARGF's graph
fusion and the zoo's three-input models need a third input and MOSI has no clean visual features, so
the third ("video") slot carries the label-free pooled GloVe text: a second, clean view of the words.

Two chains on the same inputs:
* **in-sample**: text-CNN and UCLN written for the training videos by networks fitted on them;
* **cross-fitted**: text-CNN and UCLN with ``cross_fit: 5`` (folds grouped by video), valid rows from
  the all-training-videos model. The UCLN's fold-average variant for valid rows is measured beside it.

Each chain -> ARGF and the zoo (seeds 0-4, epochs chosen on honest-mosi valid) and logistic regression on
the same context features (C chosen on valid); plus the audit of each chain's features. The features
(text-CNN, UCLN) are fitted once with seed 0; the seeds vary the fusion models.

    .venv/bin/python -m bench clean_chain [--seeds 5] [--models argf mfm ...] [--work DIR]

bench/results/clean_chain.md was measured when the cross-fitted producers' valid rows came from their
all-training-videos models (``heldout="full"``); the text-CNN now uses the fold average (the default),
so a re-run differs there. docs/audit.md gives both, and the seed study that made the average the default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.argf_mosi import RESULTS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = ("argf", "mfm", "autofusion", "ganfusion", "cyin", "mlp")
K = 5


def _write_renamed(store: Path, src: str, column: str, dst: str, modality: str) -> None:
    """Feature set ``dst`` = column ``column`` of ``src`` stored as modality ``modality``."""
    from pipeline.store import FeatureSet, read_feature_set, write_feature_set

    fs = read_feature_set(store, "mosi", src, modalities=[column])
    spec = fs.meta.modalities[column]
    meta = fs.meta.model_copy(update={"feature_set": dst, "modalities": {modality: spec}})
    write_feature_set(store, FeatureSet(meta, fs.segments, {modality: fs.features[column]}, {modality: fs.missing[column]}))


def features(store: Path, log: dict) -> None:
    """GloVe extraction, the text-CNN in-sample and cross-fitted, the published audio."""
    from pipeline.engine import extract_corpus
    from pipeline.extract import ExtractConfig, ExtractorSpec
    from pipeline.importers.table import import_embedded_default

    import_embedded_default(store)
    cfg = ExtractConfig(text=[ExtractorSpec(name="glove", keep_sequence=True)], audio=[], video=[])
    extract_corpus(SHARED / "mosi" / "segments.csv", store=store, dataset="mosi", cfg=cfg, feature_set="glove")
    _write_renamed(store, "glove", "text", "glove-as-video", "video")
    text_cnn(store, log)


def text_cnn(store: Path, log: dict, seed: int = 0, suffix: str = "") -> None:
    """The text-CNN features in-sample (``tcnn-in``) and cross-fitted (``tcnn-cf``)."""
    from pipeline.text_cnn import TextCNNConfig, produce_text_cnn

    for tag, k in (("in", 0), ("cf", K)):
        t0 = time.perf_counter()
        res = produce_text_cnn(TextCNNConfig(epochs=25, patience=6, cross_fit=k, seed=seed), store=store,
                               dataset="mosi", words_feature_set="glove.seq", out_feature_set=f"tcnn-{tag}{suffix}")
        log[f"textcnn_{tag}{suffix}"] = {"seconds": round(time.perf_counter() - t0, 1), **{
            k2: v for k2, v in res.items() if k2 != "path"}}


def context(store: Path, work: Path, tag: str, k: int, log: dict, seed: int = 0, suffix: str = "",
            variants: tuple[str, ...] = ("full", "average")) -> dict[str, str]:
    """Three UCLNs over (text-CNN, openSMILE audio, pooled GloVe); context written in-sample or cross-fitted."""
    from pipeline.context import train_ucln_per_modality, write_context_features
    from pipeline.train import TrainConfig

    raw = {"text": f"tcnn-{tag}{suffix}", "audio": "bclstm-raw", "video": "glove-as-video"}
    cfg = TrainConfig(model="ucln", seed=seed, epochs=60, patience=15, batch_size=20)
    t0 = time.perf_counter()
    runs = train_ucln_per_modality(cfg, store=store, dataset="mosi", features=raw,
                                   out_dir=work / f"ucln-{tag}{suffix}", progress=None)
    out = {"raw": raw}
    for name, kk, heldout in ((f"ctx-{tag}{suffix}", k, "full"), (f"ctx-{tag}{suffix}-avg", k, "average")):
        if heldout not in variants or (heldout == "average" and not k):
            continue
        write_context_features(runs, store=store, dataset="mosi", feature_set=name, cross_fit=kk, heldout=heldout)
        out[heldout] = name
    log[f"ucln_{tag}{suffix}_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def logreg(store: Path, features: str | dict) -> dict:
    from pipeline.baselines import run_baseline

    r = run_baseline("logreg", store=store, dataset="mosi", features=features)
    return {"accuracy": r["valid"]["accuracy"], "f1_weighted": r["valid"]["f1_weighted"], "C": r["chosen"]["C"]}


def fusion(store: Path, features: str, model: str, seed: int) -> dict:
    from pipeline.data import prepare
    from pipeline.train import TrainConfig, fit

    prep = prepare(store, "mosi", features)
    t0 = time.perf_counter()
    res = fit(TrainConfig(model=model, seed=seed, epochs=15, patience=5, batch_size=32), prep)
    return {"accuracy": res.best_valid["accuracy"], "f1_weighted": res.best_valid["f1_weighted"],
            "best_epoch": res.best_epoch, "seconds": round(time.perf_counter() - t0, 1)}


def summary(rows: list[dict]) -> dict:
    acc = np.array([r["accuracy"] for r in rows])
    return {"mean": float(acc.mean()), "std": float(acc.std()), "n": len(acc)}


def render(res: dict) -> str:
    lines = [f"# Clean MOSI chain (honest-mosi valid, 240 utterances, majority 62.08; {res['date']})", "",
             "Features fitted once (seed 0); fusion models: mean +- std over seeds "
             f"{res['seeds']}, epochs <= 15 chosen on valid. Logistic regression: C chosen on valid.", "",
             "| model | in-sample chain | cross-fitted chain |", "|---|---|---|"]
    for m in [*res["models"], "logreg"]:
        cells = []
        for tag in ("in", "cf"):
            r = res["chains"].get(tag, {}).get("results", {}).get(m)
            if r is None:
                cells.append("-")
            elif m == "logreg":
                cells.append(f"{100 * r['accuracy']:.2f} (C = {r['C']:g})")
            else:
                s = summary(r)
                cells.append(f"{100 * s['mean']:.2f} +- {100 * s['std']:.2f}")
        lines.append(f"| {m} | {cells[0]} | {cells[1]} |")
    lines += ["", "Logistic regression on the raw inputs and on the cross-fitted context with fold-averaged valid rows:", "",
              "| features | valid acc |", "|---|---|"]
    for name, r in res["logreg_extra"].items():
        lines.append(f"| {name} | {100 * r['accuracy']:.2f} |")
    for tag in ("in", "cf"):
        if "audit" in res["chains"].get(tag, {}):
            from pipeline.audit import format_audit

            lines += ["", f"Audit of the {'in-sample' if tag == 'in' else 'cross-fitted'} context features:", "",
                      format_audit(res["chains"][tag]["audit"])]
    lines += ["", f"Timings (s): {json.dumps(res['log'])}"]
    return "\n".join(lines) + "\n"


def feature_seeds(store: Path, work: Path, seeds: list[int], out: Path) -> dict:
    """The whole chain (text-CNN, UCLN, then logistic regression and the MLP) again with other feature
    seeds: how much of the in-sample vs cross-fitted difference survives refitting the features."""
    from pipeline.audit import audit_features

    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "log": {}, "seeds": {}}
    for seed in seeds:
        suffix = f"-s{seed}"
        text_cnn(store, res["log"], seed, suffix)
        row = res["seeds"][seed] = {}
        for tag, k in (("in", 0), ("cf", K)):
            ctx = context(store, work, tag, k, res["log"], seed, suffix, variants=("full",))["full"]
            row[tag] = {"logreg": logreg(store, ctx)["accuracy"], "mlp": fusion(store, ctx, "mlp", seed)["accuracy"],
                        "leaking": audit_features(store, "mosi", ctx)["leaking"]}
        print(seed, row, flush=True)
        out.write_text(json.dumps(res, indent=1, default=str))
    return res


def main() -> int:
    import torch

    from pipeline.audit import AuditConfig, audit_features

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--work", type=Path, help="keep the store here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=RESULTS / "clean_chain")
    ap.add_argument("--feature-seeds", type=int, nargs="+", help="only refit the chain's features with these "
                    "seeds (needs --work of a full run); logistic regression and the MLP on them")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.feature_seeds:
        feature_seeds(a.work / "store", a.work, a.feature_seeds, a.out.with_name(a.out.name + "_seeds.json"))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        store = work / "store"
        res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "seeds": list(range(a.seeds)), "models": a.models,
                     "log": {}, "chains": {}, "logreg_extra": {}}

        def save() -> None:
            a.out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
            a.out.with_suffix(".md").write_text(render(res))

        if not (store / "mosi" / "tcnn-cf.parquet").is_file():  # --work DIR of an earlier run: reuse its features
            features(store, res["log"])
        elif a.out.with_suffix(".json").is_file():
            res["log"] = json.loads(a.out.with_suffix(".json").read_text())["log"]
        for tag in ("in", "cf"):
            res["logreg_extra"][f"raw inputs, {tag} text-CNN"] = logreg(
                store, {"text": f"tcnn-{tag}", "audio": "bclstm-raw", "video": "glove-as-video"})
        for tag, k in (("in", 0), ("cf", K)):
            ctx = context(store, work, tag, k, res["log"])
            chain = res["chains"][tag] = {"features": ctx, "results": {"logreg": logreg(store, ctx["full"])}}
            chain["audit"] = audit_features(store, "mosi", ctx["full"], AuditConfig())
            if "average" in ctx:
                res["logreg_extra"]["cross-fitted context, fold-averaged valid rows"] = logreg(store, ctx["average"])
            save()
        for m in a.models:
            for tag in ("in", "cf"):
                feats = res["chains"][tag]["features"]["full"]
                res["chains"][tag]["results"][m] = [fusion(store, feats, m, s) for s in range(a.seeds)]
                print(m, tag, summary(res["chains"][tag]["results"][m]), flush=True)
                save()
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
