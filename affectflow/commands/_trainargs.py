"""Argument helpers shared by ``train`` and ``tune`` (features mapping, config file, overrides)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.errors import InputError
from pipeline.train import TrainConfig
from pipeline.tune import load_config_file


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
    p.add_argument("model", help="registered model name (affectflow train --list shows them)")
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--dataset", required=True, help="dataset name in the store, e.g. mosi")
    p.add_argument("--features", help="feature set (default: the dataset's own imported set) or text=A,audio=B,video=B")
    p.add_argument("--config", help="YAML/JSON TrainConfig (e.g. written by `affectflow tune`)")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--epochs", type=int, help="maximum epochs; the best one is chosen on valid")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--batch-size", type=int, help="batch size (utterances, or videos for video-level models)")
    p.add_argument("--select-metric", choices=["accuracy", "f1_weighted", "f1_macro", "loss"], help="valid metric for early stopping")
    p.add_argument("--modalities", nargs="+", help="only these modalities")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model config values, e.g. target=audio k=100")


def build_config(args: argparse.Namespace) -> TrainConfig:
    overrides = {"seed": args.seed, "epochs": args.epochs, "patience": args.patience,
                 "batch_size": args.batch_size, "select_metric": args.select_metric, "modalities": args.modalities}
    if args.config:
        cfg = load_config_file(args.config, **overrides)
        if cfg.model != args.model:
            raise InputError(f"config file is for model {cfg.model!r}, not {args.model!r}", path=args.config)
    else:
        try:
            cfg = TrainConfig(model=args.model, **{k: v for k, v in overrides.items() if v is not None})
        except ValueError as e:
            raise InputError(f"invalid training options: {e}") from e
    model_set = parse_set(args.set)
    if model_set:
        cfg = TrainConfig(**{**cfg.model_dump(), "model_cfg": {**cfg.model_cfg, **model_set}})
    return cfg
