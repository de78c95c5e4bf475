"""Run directories: save a trained model with everything needed to trust and reuse it, load it back.

A run directory holds::

    checkpoint.safetensors   best-epoch weights (safetensors: no code execution on load)
    run.json                 RunInfo: train config + hash, model class path, resolved model config, dims,
                             n_classes, labels, features + data hash, train statistics, versions, result
    history.csv              one row per epoch: train losses, valid loss and metrics

:func:`load_run` refuses, with a :class:`CheckpointError`, anything it cannot vouch for: a missing or
invalid run.json, a config whose hash does not match, a model name that now maps to another class, a
checkpoint whose bytes changed since training (sha256), an unreadable file, or tensors whose names or
shapes do not fit the model. Only safetensors are read (``torch.load`` is used nowhere here).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.base import AffectModel
from models.registry import get_model_class
from pipeline.atomic import atomic_path, write_text_atomic
from pipeline.errors import AffectflowError
from pipeline.provenance import hash_file, hash_json

CHECKPOINT = "checkpoint.safetensors"
RUN_JSON = "run.json"
HISTORY = "history.csv"
FORMAT = 1


class CheckpointError(AffectflowError):
    """A run directory or checkpoint is missing, corrupt, or does not match the model it claims."""


class RunInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: int = FORMAT
    model: str
    class_path: str
    model_cfg: dict
    train_config: dict
    config_hash: str
    input_kind: str
    dims: dict[str, int]
    n_classes: int
    label_kind: str
    label_names: list[str] | None = None
    store: str
    dataset: str
    features: dict[str, str]
    data_hash: str
    sources: dict[str, dict]
    standardization: dict[str, dict]
    versions: dict[str, str]
    checkpoint_sha256: str = ""
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    best_valid: dict = {}
    select_metric: str = ""
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    n_parameters: int = 0
    device: str = "cpu"  # where it was trained (the config may say "auto")
    created_at: str = ""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def save_run(run_dir: str | Path, model: AffectModel, info: RunInfo, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the checkpoint (``state`` or the model's current weights) and run.json, each atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in (state or model.state_dict()).items()}
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        # No safetensors metadata: its header order is not stable, and identical runs must give identical bytes.
        save_file(tensors, tmp)
        sha = hash_file(tmp)
    info = info.model_copy(update={"checkpoint_sha256": sha})
    write_text_atomic(run_dir / RUN_JSON, info.model_dump_json(indent=2))
    return run_dir


def read_run_info(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir) / RUN_JSON
    if not Path(run_dir).is_dir():
        raise CheckpointError("run directory not found", path=run_dir)
    if not path.is_file():
        raise CheckpointError("run.json is missing: not a complete run directory", path=path)
    try:
        info = RunInfo.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as e:
        raise CheckpointError(f"run.json is invalid: {str(e).splitlines()[0]}", path=path) from e
    if info.format != FORMAT:
        raise CheckpointError(f"run format {info.format}, this affectflow reads {FORMAT}", path=path)
    if hash_json(info.train_config) != info.config_hash:
        raise CheckpointError("train config does not match its recorded config hash (run.json edited?)", path=path)
    return info


def build_model(info: RunInfo) -> AffectModel:
    try:
        cls = get_model_class(info.model)
    except KeyError as e:
        raise CheckpointError(f"model {info.model!r} is not registered in this affectflow") from e
    if class_path(cls) != info.class_path:
        raise CheckpointError(f"run was trained with {info.class_path}, but {info.model!r} is now {class_path(cls)}")
    try:
        cfg = cls.Config(**info.model_cfg)
    except ValidationError as e:
        raise CheckpointError(f"model config in run.json is invalid for {info.class_path}: {e.errors()[0]['msg']}") from e
    return cls(cfg, dims=info.dims, n_classes=info.n_classes)


def load_run(run_dir: str | Path) -> tuple[AffectModel, RunInfo]:
    """Model with the best-epoch weights (eval mode) and its :class:`RunInfo`; refuses anything doubtful."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        raise CheckpointError("checkpoint.safetensors is missing", path=ckpt)
    if info.checkpoint_sha256 and hash_file(ckpt) != info.checkpoint_sha256:
        raise CheckpointError("checkpoint bytes differ from the sha256 recorded at training (corrupt or replaced)", path=ckpt)
    try:
        state = load_file(ckpt)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"not a readable safetensors file ({e})", path=ckpt) from e
    model = build_model(info)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not fit {info.class_path}: missing {missing[:3]}, unexpected {unexpected[:3]}", path=ckpt)
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if bad:
        k, got, want = bad[0]
        raise CheckpointError(f"shape mismatch for {k}: checkpoint {got}, model {want} ({len(bad)} tensors)", path=ckpt)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, info


def read_history(run_dir: str | Path) -> list[dict]:
    import csv

    path = Path(run_dir) / HISTORY
    if not path.is_file():
        raise CheckpointError("history.csv is missing", path=path)
    def value(v: str):
        if v == "":
            return None
        try:
            return json.loads(v)  # numbers, true/false
        except json.JSONDecodeError:
            try:
                return float(v)  # nan, inf
            except ValueError:
                return v

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]
