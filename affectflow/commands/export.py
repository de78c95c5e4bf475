"""``affectflow export {csd,mmsa}``: a stored feature set as CMU-MultimodalSDK computational sequences, or
as the aligned-data pickle MMSA's data loader reads."""

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
    _source(cs)
    cs.add_argument("--feature-set", required=True, help="feature set name")
    cs.add_argument("--out", required=True, help="output directory")
    cs.add_argument("--modalities", nargs="+", help="only these modalities (default: all)")
    cs.set_defaults(func=_csd)

    mm = esub.add_parser(
        "mmsa", help="MMSA's aligned-data pickle (train/valid/test: text, audio, vision, id, raw_text, labels)",
        description="Write a feature set (or text=A,audio=B,video=C) as the pickle MMSA's data loader reads "
        "(custom_feature / featurePath). One step per utterance; missing cells are written as zeros.",
    )
    _source(mm)
    mm.add_argument("--features", help="feature set, or text=A,audio=B,video=C (default: the dataset's own)")
    mm.add_argument("--out", required=True, help="output .pkl file")
    mm.set_defaults(func=_mmsa)


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="store directory")
    p.add_argument("--dataset", required=True, help="dataset name")


def _csd(args: argparse.Namespace) -> int:
    from pipeline.importers.csd import export_csd

    for path in export_csd(
        store=args.store, dataset=args.dataset, feature_set=args.feature_set, out=args.out, modalities=args.modalities
    ):
        print(f"wrote {path}")
    return 0


def _mmsa(args: argparse.Namespace) -> int:
    from affectflow.commands.train import parse_features
    from pipeline.importers.mmsa import export_mmsa

    path, n_missing = export_mmsa(args.store, args.dataset, args.out, parse_features(args.features))
    if n_missing:
        print(f"note: {n_missing} missing (segment, modality) cells written as zeros (MMSA has no missing marker)")
    print(f"wrote {path}")
    return 0
