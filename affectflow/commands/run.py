"""``affectflow run [CORPUS]``: the whole pipeline (Prefect flow ``rebuild``) in one command.

With no CORPUS it uses the embedded default (MOSI bc-LSTM raw features shipped in ``data/mosi``):
import -> per-modality UCLN -> context features -> ARGF -> evaluation on the honest-mosi valid split ->
report, and prints the metrics table. Needs no set-up: unless the user points ``PREFECT_HOME`` /
``PREFECT_API_URL`` elsewhere, Prefect keeps its state in ``<out>/.prefect`` and runs a temporary
local server for the duration of the command. Offline throughout.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import InputError

# How long `--dask-address` may take to accept a TCP connection before the run is refused.
SCHEDULER_TIMEOUT_S = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline (Prefect flow 'rebuild'); default: embedded MOSI")
    p.add_argument("corpus", nargs="?", default=None, help="raw-video corpus (default: the embedded MOSI features)")
    p.add_argument("--store", default="store", help="feature store directory (default: ./store)")
    p.add_argument("--out", default="runs", help="runs, report and Prefect state (default: ./runs)")
    p.add_argument("--dataset", default="mosi", help="dataset name in the store (default: mosi)")
    p.add_argument("--fusion", nargs="+", default=["argf"], metavar="MODEL", help="fusion models (default: argf)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="valid", help="split the metrics are reported on (default: valid)")
    p.add_argument("--ucln-epochs", type=int, default=None, help="upper bound on UCLN epochs")
    p.add_argument("--fusion-epochs", type=int, default=None, help="upper bound on fusion-model epochs")
    p.add_argument("--cross-fit", type=int, default=None, metavar="K",
                   help="folds (grouped by video) for the training rows' UCLN context features (default 5; 0 = "
                        "in-sample, which leaks the training labels into the fusion model's inputs)")
    p.add_argument("--task-runner", choices=["threads", "dask"], default=None,
                   help="how per-video tasks run: local threads (default), or Dask: a LocalCluster of "
                        "--workers workers, or the cluster at --dask-address")
    p.add_argument("--dask-address", default=None, metavar="tcp://HOST:PORT",
                   help="run per-video extraction on this existing Dask scheduler's workers (implies dask)")
    p.add_argument("--workers", type=int, default=2, help="threads / Dask workers (default: 2)")
    p.add_argument("--retries", type=int, default=2, help="retries of a per-video task on transient errors")
    p.add_argument("--max-error-rate", type=float, default=0.5,
                   help="fail extraction when more than this share of videos fail (default: 0.5)")
    p.add_argument("--extract-config", default=None, help="extraction config file (JSON/YAML/TOML)")
    p.add_argument("--feature-set", default=None, help="feature set for extracted features (default: extracted)")
    p.add_argument("--extract-only", action="store_true", help="only extract CORPUS into the store (flow extract-corpus)")
    p.add_argument("--item-fn", default=None, help=argparse.SUPPRESS)  # per-video function, for tests/benches
    p.add_argument("--no-report", action="store_true", help="skip plots and artifacts")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from flows import configure_prefect
    from pipeline.crossfit import check_cross_fit

    if args.cross_fit is not None:
        check_cross_fit(args.cross_fit)

    home = configure_prefect(Path(args.out) / ".prefect")
    from pipeline.logs import to_terminal

    to_terminal()  # stage, epoch, per-video and metric lines (+ progress bars on a terminal)
    from prefect.exceptions import FailedRun

    from flows.rebuild import RebuildConfig, rebuild

    orchestration = orchestration_params(args)
    extract = None
    if args.extract_config:
        from pipeline.extract import load_config

        extract = load_config(args.extract_config).model_dump(mode="json")
    if args.extract_only:
        if not args.corpus:
            print("affectflow run: --extract-only needs a CORPUS", file=sys.stderr)
            return 2
        return _extract_only(args, extract, orchestration, FailedRun)
    defaults = RebuildConfig()
    ucln = dict(defaults.ucln)
    fusion_train = dict(defaults.fusion_train)
    if args.ucln_epochs:
        ucln["epochs"] = args.ucln_epochs
    if args.fusion_epochs:
        fusion_train["epochs"] = args.fusion_epochs
    t0 = time.perf_counter()
    print(f"affectflow run: {args.corpus or 'embedded MOSI (data/mosi)'} -> store {args.store}, "
          f"outputs {args.out} (Prefect home {home})", flush=True)
    try:
        summary = rebuild(corpus=args.corpus, store=args.store, out=args.out, dataset=args.dataset,
                          fusion=args.fusion, ucln=ucln, fusion_train=fusion_train, seed=args.seed,
                          split=args.split, extract=extract, orchestration=orchestration,
                          raw_features=args.feature_set, report=not args.no_report, cross_fit=args.cross_fit)
    except FailedRun as e:
        print(f"affectflow run: failed: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**summary, "wall_s": wall}, indent=2, default=str))
        return 0
    print(format_table(summary, args.split))
    print(f"stages recomputed: {sum(bool(s['recomputed']) for s in summary['stages'])}/{len(summary['stages'])}"
          f"; wall {wall:.1f} s")
    if "report" in summary:
        print(f"report: {summary['report']}")
    return 0


def orchestration_params(args: argparse.Namespace) -> dict:
    """The flows' ``orchestration`` parameter, checked here so a bad address is one line, not a failed run:
    the values must form an OrchestrationConfig and a given Dask scheduler must accept connections."""
    from pydantic import ValidationError

    from flows.tasks import OrchestrationConfig

    params = {"max_workers": args.workers, "dask_workers": args.workers, "retries": args.retries,
              "max_error_rate": args.max_error_rate}
    params.update({k: v for k, v in (("task_runner", args.task_runner), ("dask_address", args.dask_address)) if v})
    try:
        cfg = OrchestrationConfig(**params)
    except ValidationError as e:
        raise InputError("; ".join(".".join(map(str, err["loc"])) + (": " if err["loc"] else "")
                                   + err["msg"].removeprefix("Value error, ") for err in e.errors())) from e
    if cfg.dask_address:
        url = urlparse(cfg.dask_address)
        try:
            socket.create_connection((url.hostname, url.port), timeout=SCHEDULER_TIMEOUT_S).close()
        except OSError as e:
            raise InputError(f"no Dask scheduler reachable at {cfg.dask_address} ({e})") from e
    return params


def _extract_only(args: argparse.Namespace, extract: dict | None, orchestration: dict, failed_run: type) -> int:
    from flows.extract_corpus import DEFAULT_ITEM_FN, extract_corpus

    t0 = time.perf_counter()
    try:
        summary = extract_corpus(corpus=args.corpus, store=args.store, dataset=args.dataset,
                                 feature_set=args.feature_set or "extracted", extract=extract,
                                 orchestration=orchestration, item_fn=args.item_fn or DEFAULT_ITEM_FN)
    except failed_run as e:
        print(f"affectflow run: extraction failed: {e}", file=sys.stderr)
        return 1
    summary["wall_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{summary['n_items']} videos: {summary['n_computed']} extracted, {summary['n_cached']} from cache, "
              f"{summary['n_failed']} failed; {summary['n_quarantine_records']} quarantine records; "
              f"wall {summary['wall_s']:.1f} s -> {summary['path']}")
        for reason, n in list(summary["reasons"].items())[:10]:
            print(f"  x{n} {reason}")
    return 0


def format_table(summary: dict, split: str) -> str:
    rows = [("model", "split", "n", "accuracy", "f1_weighted", "majority")]
    for name, m in summary["metrics"].items():
        rows.append((name, split, str(m.get("n", "")), f"{100 * m['accuracy']:.2f}", f"{100 * m['f1_weighted']:.2f}",
                     f"{100 * m['majority_accuracy']:.2f}" if "majority_accuracy" in m else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
