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

from affectflow.commands._options import add_config_options, build, given
from flows.config import OrchestrationConfig, RebuildConfig
from pipeline.errors import InputError

# How long `--dask-address` may take to accept a TCP connection before the run is refused.
SCHEDULER_TIMEOUT_S = 10

# RebuildConfig fields that are not plain options: nested training dicts (--ucln-epochs, --fusion-epochs,
# or a deployment's parameters), the extraction config (--extract-config FILE), the orchestration
# (its own generated options).
_NOT_OPTIONS = ("ucln", "ucln_model", "fusion_train", "fusion_model", "extract", "orchestration")
_FIELDS: dict[str, list[str]] = {}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline (Prefect flow 'rebuild'); default: embedded MOSI")
    p.add_argument("corpus", nargs="?", default=None, help="raw-video corpus (default: the embedded MOSI features)")
    _FIELDS["rebuild"] = add_config_options(p, RebuildConfig, skip=("corpus", *_NOT_OPTIONS))
    _FIELDS["orchestration"] = add_config_options(p.add_argument_group("orchestration"), OrchestrationConfig,
                                                  dest_prefix="orch_")
    p.add_argument("--ucln-epochs", type=int, default=None, help="upper bound on UCLN epochs")
    p.add_argument("--fusion-epochs", type=int, default=None, help="upper bound on fusion-model epochs")
    p.add_argument("--extract-config", default=None, help="extraction config file (JSON/YAML/TOML)")
    p.add_argument("--extract-only", action="store_true", help="only extract CORPUS into the store (flow extract-corpus)")
    p.add_argument("--plan", action="store_true", help="print the stage graph (stages, keys, cached or not) and exit")
    p.add_argument("--item-fn", default=None, help=argparse.SUPPRESS)  # per-video function, for tests/benches
    p.add_argument("--no-report", action="store_true", help="skip plots and artifacts")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def config_from_args(args: argparse.Namespace) -> RebuildConfig:
    """The rebuild's config: RebuildConfig's defaults, then the options given (defaults written once)."""
    values = given(args, _FIELDS["rebuild"])
    defaults = RebuildConfig()
    if args.ucln_epochs:
        values["ucln"] = {**defaults.ucln, "epochs": args.ucln_epochs}
    if args.fusion_epochs:
        values["fusion_train"] = {**defaults.fusion_train, "epochs": args.fusion_epochs}
    if args.extract_config:
        from pipeline.extract import load_config

        values["extract"] = load_config(args.extract_config).model_dump(mode="json")
    orch = build(OrchestrationConfig, given(args, _FIELDS["orchestration"], "orch_"), "orchestration options")
    if orch.dask_address:  # refused here, in one line, rather than as a failed run
        url = urlparse(orch.dask_address)
        try:
            socket.create_connection((url.hostname, url.port), timeout=SCHEDULER_TIMEOUT_S).close()
        except OSError as e:
            raise InputError(f"no Dask scheduler reachable at {orch.dask_address} ({e})") from e
    values["orchestration"] = orch
    cfg = build(RebuildConfig, {"corpus": args.corpus, **values}, "run options")
    from pipeline.crossfit import check_cross_fit

    check_cross_fit(cfg.cross_fit)
    return cfg


def _plan(cfg: RebuildConfig) -> int:
    from flows.graph import feature_set_digest, format_plan, plan
    from pipeline.store import feature_set_path

    store, out = Path(cfg.store).resolve(), Path(cfg.out).resolve()
    raw = None
    if cfg.corpus is not None:
        if not feature_set_path(store, cfg.dataset, cfg.raw_set).is_file():
            print(f"extraction of {cfg.corpus} runs first; the stages after it are keyed on its output "
                  f"(no {cfg.dataset}/{cfg.raw_set} in {store} yet)")
            return 0
        raw = feature_set_digest(store, cfg.dataset, cfg.raw_set)
        print(f"extraction of {cfg.corpus} runs first (per-video cache); keys below assume it leaves "
              f"{cfg.dataset}/{cfg.raw_set} unchanged")
    print(format_plan(plan(cfg, store, out, raw)))
    return 0


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.plan:
        return _plan(cfg)
    from pipeline.logs import to_terminal

    to_terminal()  # stage, epoch, per-video and metric lines (+ progress bars on a terminal)
    if args.extract_only and not args.corpus:
        print("affectflow run: --extract-only needs a CORPUS", file=sys.stderr)
        return 2
    import os

    from flows import configure_prefect

    home = configure_prefect(Path(cfg.out) / ".prefect")
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        # Our own temporary server (not Prefect's ephemeral one): it dies with this process, even on kill -9.
        from flows import server as prefect_server

        server = prefect_server.start(home / "server.log")
        os.environ["PREFECT_API_URL"] = server.url
    try:
        from prefect.exceptions import FailedRun

        if args.extract_only:
            return _extract_only(args, cfg, FailedRun)
        return _rebuild(args, cfg, home, FailedRun)
    finally:
        if server is not None:
            _send_queued_logs()
            server.stop()


def _send_queued_logs() -> None:
    """Deliver the run logs still queued for the API before the temporary server goes (else Prefect's
    log worker prints "Error logging to API" at exit)."""
    if "prefect" in sys.modules:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()


def _rebuild(args: argparse.Namespace, cfg: RebuildConfig, home: Path, failed_run: type) -> int:
    from flows.rebuild import rebuild

    t0 = time.perf_counter()
    print(f"affectflow run: {cfg.corpus or 'embedded MOSI (data/mosi)'} -> store {cfg.store}, "
          f"outputs {cfg.out} (Prefect home {home})", flush=True)
    try:
        summary = rebuild(**cfg.model_dump(mode="json"), report=not args.no_report)
    except failed_run as e:
        print(f"affectflow run: failed: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**summary, "wall_s": wall}, indent=2, default=str))
        return 0
    print(format_table(summary, cfg.split))
    print(f"stages recomputed: {sum(bool(s['recomputed']) for s in summary['stages'])}/{len(summary['stages'])}"
          f"; wall {wall:.1f} s")
    if "report" in summary:
        print(f"report: {summary['report']}")
    return 0


def _extract_only(args: argparse.Namespace, cfg: RebuildConfig, failed_run: type) -> int:
    from flows.extract_corpus import DEFAULT_ITEM_FN, extract_corpus

    t0 = time.perf_counter()
    try:
        summary = extract_corpus(corpus=cfg.corpus, store=cfg.store, dataset=cfg.dataset, feature_set=cfg.raw_set,
                                 extract=cfg.extract, orchestration=cfg.orchestration.model_dump(),
                                 item_fn=args.item_fn or DEFAULT_ITEM_FN)
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
