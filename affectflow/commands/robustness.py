"""``affectflow robustness RUN_DIR [--split valid]``: missing-modality robustness of a saved run.

Complete input, every fixed missing subset, random missing per sample at rates 0.1..0.7 (at least one
modality kept) over several seeds; writes a CSV and markdown table, a PNG curve and the area under it
(``RUN_DIR/robustness/<split>/`` unless ``--out``). See :mod:`pipeline.robustness`.
"""

from __future__ import annotations

import argparse
import json


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="accuracy under missing modalities (fixed subsets, random rates, AUC)")
    p.add_argument("run_dir", help="run directory written by `affectflow train`")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split to score (default: valid)")
    p.add_argument("--rates", type=_floats, default=None, help="comma-separated missing rates (default 0.1,...,0.7)")
    p.add_argument("--seeds", type=_ints, default=None, help="comma-separated seeds for random missing (default 0,...,4)")
    p.add_argument("--out", help="output folder (default RUN_DIR/robustness/SPLIT)")
    p.add_argument("--store", help="read the features from this store instead of the one recorded in the run")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_robustness)


def _robustness(args: argparse.Namespace) -> int:
    from pipeline.errors import InputError
    from pipeline.robustness import RobustnessConfig, markdown_table, robustness_run

    kw: dict = {"split": args.split}
    if args.rates is not None:
        kw["rates"] = args.rates
    if args.seeds is not None:
        kw["seeds"] = args.seeds
    try:
        cfg = RobustnessConfig(**kw)
    except ValueError as e:
        raise InputError(f"invalid robustness options: {e}") from e
    res, paths = robustness_run(args.run_dir, cfg, out_dir=args.out, store=args.store)
    if args.json:
        print(json.dumps({**res.summary(), "files": {k: str(v) for k, v in paths.items()}}, indent=2))
    else:
        print(markdown_table(res, f"{args.run_dir} ({args.split})"))
        print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
