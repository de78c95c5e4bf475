"""``affectflow audit --store S --dataset D --features F [--json] [--plot P]``: which modalities leak labels.

Per modality, a standardised logistic-regression probe: grouped-by-video K-fold accuracy inside train vs
accuracy on valid (and test) with a bootstrap-by-video interval; a modality whose inside-train accuracy
lies above the held-out interval is flagged (see pipeline/audit.py). Exit 0 either way: a flag is a
finding, not an error.
"""

from __future__ import annotations

import argparse
import json

from affectflow.commands.train import parse_features


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="flag feature modalities whose training rows leak their labels")
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--dataset", required=True, help="dataset name in the store")
    p.add_argument("--features", help="feature set (default: the dataset's own imported set) or text=A,audio=B,video=C")
    p.add_argument("--modalities", nargs="+", help="only these modalities")
    p.add_argument("--k", type=int, default=5, help="folds inside train, grouped by video (default 5)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws over held-out videos (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="PNG", help="write a plot: inside-train vs held-out accuracy per modality")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.audit import AuditConfig, audit_features, format_audit, plot_audit
    from pipeline.errors import InputError

    try:
        cfg = AuditConfig(k=args.k, n_boot=args.n_boot, seed=args.seed)
    except ValidationError as e:
        err = e.errors()[0]
        raise InputError(f"invalid audit option --{'-'.join(map(str, err['loc'])).replace('_', '-')}: {err['msg']}") from None
    res = audit_features(args.store, args.dataset, parse_features(args.features), cfg, args.modalities)
    if args.plot:
        res["plot"] = str(plot_audit(res, args.plot))
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(format_audit(res))
    leaking = res["leaking"]
    print(f"leaking: {', '.join(leaking)}" if leaking else "no modality flagged")
    if args.plot:
        print(f"plot: {res['plot']}")
    return 0
