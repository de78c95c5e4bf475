"""``affectflow train MODEL --store DIR --dataset NAME [--features SET] [--config FILE] [--seed N] --out RUN_DIR``.

Models that train per modality (``ucln``) write one run per modality (RUN_DIR/<modality>) and, with
``--write-context NAME``, their context outputs back to the store as feature set NAME. The training
options are generated from :class:`pipeline.train_config.TrainConfig` (shared with ``tune``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from affectflow.commands._options import add_config_options, build, given
from pipeline.errors import InputError
from pipeline.train_config import TrainConfig

_TRAIN_FIELDS: list[str] = []


def parse_features(text: str | None) -> str | dict[str, str] | None:
    """``SET`` (every modality of SET) or ``text=SET1,audio=SET2,video=SET2`` (combine feature sets)."""
    if not text or "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        m, sep, fs = part.partition("=")
        if not sep or not m.strip() or not fs.strip():
            raise InputError(f"--features: expected MODALITY=SET pairs, got {part!r}")
        out[m.strip()] = fs.strip()
    return out


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` model-config overrides; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep:
            raise InputError(f"--set: expected key=value, got {kv!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered model name (e.g. argf, mfm, mlp, ucln)")
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--dataset", required=True, help="dataset name in the store, e.g. mosi")
    p.add_argument("--features", help="feature set (default: the dataset's own imported set) or text=A,audio=B,video=B")
    p.add_argument("--config", help="YAML/JSON TrainConfig (e.g. written by `affectflow tune`)")
    _TRAIN_FIELDS[:] = add_config_options(p.add_argument_group("training (TrainConfig)"), TrainConfig,
                                          skip=("model", "model_cfg"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model config values, e.g. target=audio k=100")


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The config file (if any), then the options given, then ``--set`` model values."""
    overrides = given(args, _TRAIN_FIELDS)
    if args.config:
        cfg = TrainConfig.from_file(args.config, **overrides)
        if cfg.model != args.model:
            raise InputError(f"config file is for model {cfg.model!r}, not {args.model!r}", path=args.config)
    else:
        cfg = build(TrainConfig, {"model": args.model, **overrides}, "training options")
    model_set = parse_set(args.set)
    if model_set:
        cfg = build(TrainConfig, {**cfg.model_dump(), "model_cfg": {**cfg.model_cfg, **model_set}}, "--set")
    return cfg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (early stopping on valid) and write a run directory")
    add_train_args(p)
    p.add_argument("--out", required=True, help="run directory to write (per modality for ucln)")
    p.add_argument("--write-context", metavar="NAME", help="per-modality models (ucln): write the context features as feature set NAME")
    p.add_argument("--cross-fit", type=int, default=0, metavar="K",
                   help="ucln --write-context: training rows' context from K fold UCLNs grouped by video "
                        "(0, the default here: in-sample; training on it then warns)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from models.registry import get_model_class, list_models
    from pipeline.context import train_runs

    if args.model not in list_models():
        raise InputError(f"unknown model {args.model!r}; registered: {list_models()}")
    from pipeline.crossfit import check_cross_fit

    check_cross_fit(args.cross_fit)
    cfg = build_config(args)
    if args.cross_fit and not get_model_class(cfg.model).per_modality:
        raise InputError("--write-context / --cross-fit are for per-modality context models (ucln)")
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    runs = train_runs(cfg, store=args.store, dataset=args.dataset, features=parse_features(args.features),
                      out_dir=args.out, write_context=args.write_context, progress=progress,
                      cross_fit=args.cross_fit)
    for name, run in runs.items():
        print(run if name == "run" else f"{name}\t{run}")
    return 0
