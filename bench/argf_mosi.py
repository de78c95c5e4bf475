"""ARGF on real MOSI, honest-mosi protocol: targets, Table-5 ablations, authors' code, full chain, baselines.

Every choice (hyper-parameters, epoch, variant) is made on the honest-mosi VALID split (10 clean
test-section videos, 240 utterances); the 21 held-out test videos are not here. Each trained row is the
mean +- std over seeds of the valid accuracy / weighted F1 at the epoch chosen on valid. Also: the
paper's own protocol (argf-mosi: epoch chosen on videos 49-61 of the training section, whose features
leak their labels; scored on the same 240 clean utterances, which are its "test" here), wall time and
peak memory per run. Results: bench/results/argf_mosi.{md,json} (partial results kept; reruns resume).

    .venv/bin/python -m bench argf_mosi [--seeds 5] [--trials 40] [--quick] [--rows ID ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED_MOSI = ROOT.parent / "shared" / "data" / "mosi"
PAPER = {"accuracy": 81.38, "f1_weighted": 81.52}  # ARGF paper, MOSI, 752 test utterances, chosen on test


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.start = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def build_store(store: Path) -> None:
    from pipeline.importers.legacy_pickle import import_legacy_pickle
    from pipeline.importers.table import import_embedded_default

    pickle, segments = SHARED_MOSI / "unimodal_mosi_2way.dev.pickle", SHARED_MOSI / "segments.csv"
    if not (store / "mosi" / "bclstm-context.parquet").is_file():
        import_legacy_pickle(pickle, store=store, dataset="mosi", segments=segments)
    if not (store / "mosi-argf" / "bclstm-context.parquet").is_file():
        import_legacy_pickle(pickle, store=store, dataset="mosi-argf", split_policy="argf-mosi", segments=segments)
    if not (store / "mosi" / "bclstm-raw.parquet").is_file():
        import_embedded_default(store)


def rows_spec(argf: dict, ucln: dict) -> list[dict]:
    """The table's rows. ``argf`` = the ARGF model config chosen on valid (target l)."""
    def a(**kw):
        return {**argf, **kw}

    ctx = {"dataset": "mosi", "features": "bclstm-context"}
    return [
        {"id": "argf-l", "label": "ARGF, target l (paper)", "model": "argf", "cfg": a(target="text"), **ctx},
        {"id": "argf-a", "label": "ARGF, target a", "model": "argf", "cfg": a(target="audio"), **ctx},
        {"id": "argf-v", "label": "ARGF, target v", "model": "argf", "cfg": a(target="video"), **ctx},
        {"id": "no-adv", "label": "ARGF l, w/o adversarial training", "model": "argf", "cfg": a(target="text", adversarial=False), **ctx},
        {"id": "no-cls", "label": "ARGF l, w/o classifier", "model": "argf", "cfg": a(target="text", classifier=False), **ctx},
        {"id": "no-dec", "label": "ARGF l, w/o decoder", "model": "argf", "cfg": a(target="text", decoder=False), **ctx},
        {"id": "authors", "label": "ARGF, authors' code variant (target a)", "model": "argf",
         "cfg": {**{k: v for k, v in argf.items() if k != "target"}, "variant": "authors_code"}, **ctx},
        {"id": "chain", "label": "raw bc-LSTM npz -> our UCLN -> ARGF l", "model": "argf", "cfg": a(target="text"),
         "dataset": "mosi", "features": "bclstm-raw", "ucln": ucln},
        {"id": "mlp", "label": "early-fusion MLP (ours)", "model": "mlp", "cfg": {}, **ctx},
        {"id": "logreg", "label": "logistic regression (C on valid)", "baseline": "logreg", **ctx},
        {"id": "logreg-raw", "label": "logistic regression, raw bc-LSTM features", "baseline": "logreg",
         "dataset": "mosi", "features": "bclstm-raw"},
        {"id": "majority", "label": "majority class (of train)", "baseline": "majority", **ctx},
        {"id": "paper-protocol", "label": "ARGF l, paper's protocol (argf-mosi: epoch on leaky valid)", "model": "argf",
         "cfg": a(target="text"), "dataset": "mosi-argf", "features": "bclstm-context", "report_split": "test"},
    ]


def train_once(row: dict, seed: int, store: Path, runs: Path, epochs: int, patience: int, batch_size: int) -> dict:
    from pipeline.context import train_ucln_per_modality
    from pipeline.evaluate import evaluate_run
    from pipeline.train import TrainConfig, train

    run_dir = runs / row["id"] / f"seed{seed}"
    features = row["features"]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if "ucln" in row:  # the full chain: UCLN per modality on raw features, context set, then ARGF
            ucfg = TrainConfig(model="ucln", seed=seed, **row["ucln"])
            train_ucln_per_modality(ucfg, store=store, dataset=row["dataset"], features=features,
                                    out_dir=run_dir / "ucln", write_context=f"ucln-context-s{seed}", progress=None)
            features = f"ucln-context-s{seed}"
        cfg = TrainConfig(model=row["model"], model_cfg=row["cfg"], seed=seed, epochs=epochs, patience=patience,
                          batch_size=batch_size)
        train(cfg, store=store, dataset=row["dataset"], features=features, out_dir=run_dir / "model", progress=None)
        wall = time.perf_counter() - t0
    valid = evaluate_run(run_dir / "model", "valid")
    out = {"seed": seed, "valid_accuracy": valid["accuracy"], "valid_f1": valid["f1_weighted"],
           "best_epoch": valid["best_epoch"], "wall_s": wall, "peak_rss_mb": mem.peak / 2**20,
           "rss_growth_mb": (mem.peak - mem.start) / 2**20}
    if row.get("report_split"):
        rep = evaluate_run(run_dir / "model", row["report_split"])
        out.update({"report_accuracy": rep["accuracy"], "report_f1": rep["f1_weighted"]})
    if seed == 0:
        from pipeline.checkpoint import read_run_info

        out["n_parameters"] = read_run_info(run_dir / "model").n_parameters
    return out


def baseline_once(row: dict, store: Path) -> dict:
    from pipeline.baselines import run_baseline

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        res = run_baseline(row["baseline"], store=store, dataset=row["dataset"], features=row["features"])
        wall = time.perf_counter() - t0
    return {"seed": 0, "valid_accuracy": res["valid"]["accuracy"], "valid_f1": res["valid"]["f1_weighted"],
            "chosen": res["chosen"], "wall_s": wall, "peak_rss_mb": mem.peak / 2**20}


def summarise(runs: list[dict], key: str) -> tuple[float, float]:
    vals = [100 * r[key] for r in runs]
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


# The search space: the authors' (MODEL-NOTES) at the paper's MOSI k = 50 and batch 32/64 (8 and 16 cost
# 2-4x per epoch on 2 cores), plus the honest regularisers against leaked training features (docs/argf.md).
SEARCH_SPACE: dict = {
    "dropout": (0.0, 0.7), "lr": [1e-4, 3e-4, 1e-3], "batch_size": [32, 64],
    "weight_decay": [0.0, 1e-3, 1e-2, 3e-2, 1e-1], "alpha": [0.001, 0.01, 0.05],
    "input_noise": [0.0, 0.3, 0.5], "input_dropout": [0.0, 0.1, 0.2], "modality_dropout": [0.0, 0.1, 0.2, 0.3],
}
TUNING_SEEDS = [100, 101, 102]  # a trial's score = mean over these; the table's rows use seeds 0..4


def tune_argf(store: Path, trials: int, epochs: int, patience: int, out: Path) -> dict:
    """Optuna for ARGF (target l) on honest valid, each trial the mean over TUNING_SEEDS.

    Tuning on other seeds than the reported ones keeps seed luck out of the reported mean (valid-set luck
    stays: valid is both the selection and the reporting split). A finished search (``out.trials.json``)
    is reused, so an interrupted benchmark resumes.
    """
    from pipeline.train import TrainConfig
    from pipeline.tune import TuneConfig, tune

    trials_file = out.with_suffix(".trials.json")
    if trials_file.is_file():
        res = json.loads(trials_file.read_text())
    else:
        base = TrainConfig(model="argf", model_cfg={"target": "text", "k": 50}, epochs=epochs, patience=patience)
        res = tune(base, TuneConfig(trials=trials, seed=1, space=SEARCH_SPACE, seeds=TUNING_SEEDS, workers=2),
                   store=store, dataset="mosi", features="bclstm-context", out=out, progress=print)
    best = max(res["trials"], key=lambda t: t["valid"])
    return {"chosen": {**best["params"], "target": "text", "k": 50}, "best_valid": best["valid"],
            "best_trial": best["trial"], "rule": f"best mean valid accuracy over seeds {TUNING_SEEDS}",
            "overall_best_valid": res["best_value"], "trials": res["trials"]}


def render(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# ARGF on real MOSI (honest-mosi protocol)", "",
        f"Valid = 10 clean test-section videos (240 utterances, 62.1% positive). {meta['seeds']} seeds per trained row "
        f"(mean +- std), epoch chosen on valid (max {meta['epochs']}, patience {meta['patience']}, batch {meta['batch_size']}). "
        f"Machine: {meta['machine']}. Run {meta['date']}.", "",
        f"ARGF config (chosen on valid, {meta['tuning']}): `{json.dumps(meta['argf_cfg'])}`", "",
        "| row | valid acc (%) | valid F1w (%) | best epoch | wall s / run | peak RSS MB | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        runs = row.get("runs", [])
        if not runs:
            continue
        acc, acc_sd = summarise(runs, "valid_accuracy")
        f1, f1_sd = summarise(runs, "valid_f1")
        ep = [r["best_epoch"] for r in runs if "best_epoch" in r]
        eps = f"{statistics.mean(ep):.1f}" if ep else "-"
        wall = statistics.mean(r["wall_s"] for r in runs)
        peak = max(r["peak_rss_mb"] for r in runs)
        params = next((r["n_parameters"] for r in runs if "n_parameters" in r), None)
        label = row["label"] + (f" ({len(runs)} seeds)" if len(runs) != meta["seeds"] and "baseline" not in row else "")
        if "chosen" in runs[0]:
            label += f" {runs[0]['chosen']}"
        lines.append(f"| {label} | {acc:.2f} +- {acc_sd:.2f} | {f1:.2f} +- {f1_sd:.2f} | {eps} | {wall:.1f} | {peak:.0f} | "
                     f"{params if params else '-'} |")
        if row.get("report_split") and "report_accuracy" in runs[0]:
            racc, racc_sd = summarise(runs, "report_accuracy")
            rf1, rf1_sd = summarise(runs, "report_f1")
            lines.append(f"| ^ same runs scored on the 240 clean utterances (their 'test') | {racc:.2f} +- {racc_sd:.2f} | "
                         f"{rf1:.2f} +- {rf1_sd:.2f} | | | | |")
    lines += ["", f"Paper (ARGF, MOSI, 752 test utterances, chosen on test): {PAPER['accuracy']} / {PAPER['f1_weighted']}.",
              "Valid-majority (always positive) would score 62.08 / 47.55. Baselines are deterministic (one run).", ""]
    return "\n".join(lines)


def merge(base: Path) -> int:
    """Combine the parallel workers' files: per row, the seeds from every part (first one wins)."""
    parts = sorted(base.parent.glob(f"{base.name}_part*.json"))
    main_path = base.with_suffix(".json")
    results = json.loads(main_path.read_text()) if main_path.is_file() else json.loads(parts[0].read_text())
    rows = {r["id"]: r for r in results["rows"]}
    for p in parts:
        for r in json.loads(p.read_text())["rows"]:
            have = {x["seed"] for x in rows[r["id"]]["runs"]} if r["id"] in rows else set()
            if r["id"] not in rows:
                rows[r["id"]] = {**r, "runs": []}
            rows[r["id"]]["runs"] += [x for x in r["runs"] if x["seed"] not in have]
    for r in rows.values():
        r["runs"].sort(key=lambda x: x["seed"])
    results["rows"] = list(rows.values())
    main_path.write_text(json.dumps(results, indent=1))
    base.with_suffix(".md").write_text(render(results))
    print(render(results))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, help="default: the tuned batch size (32 without tuning)")
    ap.add_argument("--trials", type=int, default=40, help="Optuna trials for ARGF's config (0: model defaults)")
    ap.add_argument("--rows", nargs="*", help="only these row ids")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, no tuning: a smoke run")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_argf_mosi", help="store + run dirs")
    ap.add_argument("--results", type=Path, default=RESULTS / "argf_mosi")
    ap.add_argument("--part", help="write RESULTS_part<PART>.json (run disjoint --rows in parallel, then --merge)")
    ap.add_argument("--merge", action="store_true", help="merge RESULTS_part*.json into RESULTS.{json,md}")
    a = ap.parse_args()
    if a.merge:
        return merge(a.results)
    if a.quick:
        a.seeds, a.epochs, a.patience, a.trials = 1, 3, 2, 0
        a.results = a.results.with_name(a.results.name + "_quick")
    torch.set_num_threads(1)
    store, runs = a.work / "store", a.work / "runs"
    build_store(store)
    json_path = a.results.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() else {"rows": []}
    tuning_file = a.results.with_name(a.results.name + "_tuning.yaml")  # shared by parallel parts
    if a.part:  # a parallel worker: starts from the shared results (tuning included), writes its own file
        a.results = a.results.with_name(f"{a.results.name}_part{a.part}")
        json_path = a.results.with_suffix(".json")
        if json_path.is_file():
            results = json.loads(json_path.read_text())
    if "tuning" not in results:
        if a.trials > 0:
            results["tuning"] = tune_argf(store, a.trials, a.epochs, a.patience,
                                          tuning_file)
        else:
            results["tuning"] = {"chosen": {}, "note": "model defaults"}
    chosen = results["tuning"]["chosen"]
    a.batch_size = a.batch_size or chosen.get("batch_size", 32)  # a trainer key of the search
    argf_cfg = {k: v for k, v in chosen.items() if k not in ("target", "batch_size")}
    ucln = {"epochs": 40, "patience": 8, "batch_size": 10}
    results["meta"] = {"seeds": a.seeds, "epochs": a.epochs, "patience": a.patience, "batch_size": a.batch_size,
                       "argf_cfg": argf_cfg, "ucln": ucln, "date": time.strftime("%Y-%m-%d %H:%M"),
                       "tuning": (f"{len(results['tuning'].get('trials', []))} Optuna trials, {results['tuning']['rule']}: "
                                  f"trial {results['tuning']['best_trial']}, valid acc {100 * results['tuning']['best_valid']:.2f} "
                                  f"(overall best {100 * results['tuning']['overall_best_valid']:.2f})"
                                  if results["tuning"].get("trials") else "model defaults"),
                       "machine": f"{psutil.cpu_count()} CPUs, load avg {psutil.getloadavg()[0]:.1f} at start, torch threads 1"}
    done = {r["id"]: r for r in results["rows"]}
    ordered = []
    for row in rows_spec(argf_cfg, ucln):
        prev = done.get(row["id"])
        if prev and prev.get("spec") == json.dumps(row, sort_keys=True):
            row = prev
        else:
            row = {**row, "spec": json.dumps(row, sort_keys=True), "runs": []}
        ordered.append(row)
    results["rows"] = ordered
    for row in ordered:
        if a.rows and row["id"] not in a.rows:
            continue
        want = 1 if "baseline" in row else a.seeds
        for seed in range(len(row["runs"]), want):
            r = baseline_once(row, store) if "baseline" in row else train_once(
                row, seed, store, runs, a.epochs, a.patience, a.batch_size)
            row["runs"].append(r)
            print(f"{row['id']:>15} seed {seed}: valid acc {100 * r['valid_accuracy']:.2f} f1 {100 * r['valid_f1']:.2f} "
                  f"({r['wall_s']:.1f} s)", flush=True)
            a.results.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=1))
            a.results.with_suffix(".md").write_text(render(results))
    json_path.write_text(json.dumps(results, indent=1))
    a.results.with_suffix(".md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
