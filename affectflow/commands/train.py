"""``affectflow train MODEL --store DIR --dataset NAME [--features SET] [--config FILE] [--seed N] --out RUN_DIR``.

``affectflow train ucln`` trains one UCLN per modality (RUN_DIR/<modality>) and, with
``--write-context NAME``, writes their context outputs back to the store as feature set NAME.
"""

from __future__ import annotations

import argparse
import sys

from affectflow.commands._trainargs import add_train_args, build_config, parse_features
from models.registry import get_model_class, list_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (early stopping on valid) and write a run directory")
    add_train_args(p)
    p.add_argument("--out", required=True, help="run directory to write (per modality for ucln)")
    p.add_argument("--write-context", metavar="NAME", help="ucln only: write the context features as feature set NAME")
    p.add_argument("--cross-fit", type=int, default=0, metavar="K",
                   help="ucln --write-context: training rows' context from K fold UCLNs grouped by video "
                        "(0, the default here: in-sample; training on it then warns)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=_train)


def _progress(quiet: bool):
    return None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _train(args: argparse.Namespace) -> int:
    from pipeline.crossfit import check_cross_fit
    from pipeline.errors import InputError

    if args.model not in list_models():
        raise InputError(f"unknown model {args.model!r}; registered: {list_models()}")
    cfg = build_config(args)
    check_cross_fit(args.cross_fit)
    features = parse_features(args.features)
    progress = _progress(args.quiet)
    if get_model_class(args.model).input_kind == "video" and "modality" in get_model_class(args.model).Config.model_fields:
        from pipeline.context import train_ucln_per_modality

        runs = train_ucln_per_modality(cfg, store=args.store, dataset=args.dataset, features=features,
                                       out_dir=args.out, write_context=args.write_context, progress=progress,
                                       cross_fit=args.cross_fit)
        for m, run in runs.items():
            print(f"{m}\t{run}")
        return 0
    if args.write_context or args.cross_fit:
        raise InputError("--write-context / --cross-fit are for per-modality context models (ucln)")
    from pipeline.train import train

    print(train(cfg, store=args.store, dataset=args.dataset, features=features, out_dir=args.out, progress=progress))
    return 0
