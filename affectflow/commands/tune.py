"""``affectflow tune MODEL --store DIR --dataset NAME [--features SET] --trials N --out FILE``.

Optuna over the model's declared search space, scored on VALID only (``--trial-seeds``: the mean over
several training seeds); FILE is a TrainConfig YAML that
``affectflow train MODEL --config FILE`` accepts (trials beside it in FILE.trials.json).
"""

from __future__ import annotations

import argparse
import sys

from affectflow.commands.train import add_train_args, build_config, parse_features


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="hyper-parameter search on valid; writes a config that `train --config` accepts")
    add_train_args(p)
    p.add_argument("--trials", type=int, default=20, help="number of trials (default 20)")
    p.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    p.add_argument("--trial-seeds", type=int, nargs="+", metavar="SEED",
                   help="score each trial as the mean over these training seeds (default: --seed only)")
    p.add_argument("--workers", type=int, default=1, help="processes training a trial's seeds in parallel (default 1)")
    p.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    p.add_argument("--out", required=True, help="YAML file for the chosen config")
    p.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from pipeline.tune import TuneConfig, tune

    base = build_config(args)
    res = tune(base, TuneConfig(trials=args.trials, seed=args.sampler_seed, timeout_s=args.timeout,
                                 seeds=args.trial_seeds, workers=args.workers),
               store=args.store, dataset=args.dataset, features=parse_features(args.features), out=args.out,
               progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"best valid {res['metric']} {res['best_value']:.4f} (trial {res['best_trial']}) -> {args.out}")
    return 0
