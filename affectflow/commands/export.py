"""``affectflow export csd``: a stored feature set as CMU-MultimodalSDK computational sequences."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a stored feature set to other formats")
    esub = p.add_subparsers(dest="export_kind", required=True, metavar="FORMAT")
    cs = esub.add_parser(
        "csd", help="one .csd (HDF5) per vector modality, OUT/<modality>.csd",
        description="Write each vector modality of a feature set as a .csd file. Feature sets imported "
        "from .csd files come back with their original root name, metadata and dtypes.",
    )
    cs.add_argument("--store", required=True, help="store directory")
    cs.add_argument("--dataset", required=True, help="dataset name")
    cs.add_argument("--feature-set", required=True, help="feature set name")
    cs.add_argument("--out", required=True, help="output directory")
    cs.add_argument("--modalities", nargs="+", help="only these modalities (default: all)")
    cs.set_defaults(func=_csd)


def _csd(args: argparse.Namespace) -> int:
    from pipeline.importers.csd import export_csd

    for path in export_csd(
        store=args.store, dataset=args.dataset, feature_set=args.feature_set, out=args.out, modalities=args.modalities
    ):
        print(f"wrote {path}")
    return 0
