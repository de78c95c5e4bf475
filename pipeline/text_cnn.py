"""Train the text-CNN on a corpus's TRAIN labels over its stored word sequences; write its features.

bc-LSTM style: the CNN (``models/textcnn.py``, registered as ``textcnn``) is fitted on the training
split's labels by the one trainer (:func:`pipeline.train.train`: early stopping on the valid split, the
best epoch, a run directory with safetensors weights, config and versions), and its penultimate layer
(100-d) is written for *every* row as a new feature set ``<dataset>/<out_feature_set>`` (kind ``model``,
lineage to the word sequences and the run's checkpoint). Train-split features are therefore fitted to
their own labels (as the published bc-LSTM features were); valid/test rows are clean. Rows without words
stay missing. This module only defines the task: the data source and the feature writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from models.base import Batch
from models.textcnn import LENGTHS, pad_sequences
from pipeline.checkpoint import load_run, read_history
from pipeline.data import BINARY_CLASS_NAMES, ModalityStats, SourceInfo, SplitTensors
from pipeline.errors import InputError, SplitError
from pipeline.provenance import StageConfig, hash_json
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, read_feature_set, write_feature_set
from pipeline.train import TrainConfig, train, validate
from pipeline.train_config import Device


class TextCNNConfig(StageConfig):
    column: str = "text"
    filters: int = 50
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    hidden: int = 100
    dropout: float = 0.5
    max_len: int = 60
    epochs: int = 40
    patience: int = Field(8, description="epochs without valid improvement before stopping")
    batch_size: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: Device = "auto"
    cross_fit: int = Field(0, description="K >= 2: train rows' features from K fold models grouped by video")

    def train_config(self) -> TrainConfig:
        model = {"filters": self.filters, "kernel_sizes": list(self.kernel_sizes), "hidden": self.hidden,
                 "dropout": self.dropout, "lr": self.lr, "weight_decay": self.weight_decay}
        return TrainConfig(model="textcnn", model_cfg=model, epochs=self.epochs, patience=self.patience,
                           batch_size=self.batch_size, seed=self.seed, standardize="none", device=self.device,
                           modalities=[self.column])


def _labels(fs: FeatureSet) -> tuple[np.ndarray, int, Literal["bin", "class"]]:
    seg = fs.segments
    if seg["label_bin"].notna().any():
        return seg["label_bin"].to_numpy(dtype=float), 2, "bin"
    if seg["label_class"].notna().any():
        y = seg["label_class"].to_numpy(dtype=float)
        return y, int(np.nanmax(y)) + 1, "class"
    raise InputError(f"{fs.meta.dataset}/{fs.meta.feature_set} has no labels to train the text-CNN on")


@dataclass
class WordSequences:
    """A :class:`pipeline.data.TrainSource` over a stored word-sequence column: each split's labelled rows
    with words, zero-padded to ``max_len`` words (``x[column]`` ``[N, T, D]`` plus ``x["lengths"]``)."""

    fs: FeatureSet
    column: str
    max_len: int

    def __post_init__(self) -> None:
        raw = self.fs.features[self.column]
        self.y, self.n_classes, self.label_kind = _labels(self.fs)
        self.have = np.array([s is not None and len(s) > 0 for s in raw])
        self.seqs = [torch.from_numpy(np.asarray(s, np.float32)) if h else None for s, h in zip(raw, self.have, strict=True)]
        self.stats: dict[str, ModalityStats] = {}  # word vectors are used as stored

    @property
    def dims(self) -> dict[str, int]:
        return {self.column: self.fs.meta.modalities[self.column].dim}

    @property
    def class_names(self) -> list[str] | None:
        return list(BINARY_CLASS_NAMES) if self.label_kind == "bin" else self.fs.meta.label_names

    @property
    def sources(self) -> dict[str, SourceInfo]:
        m = self.fs.meta
        return {self.column: SourceInfo(feature_set=m.feature_set, source_hash=m.source_hash,
                                        producer=f"{m.producer.kind}:{m.producer.name}", n_rows=m.n_rows)}

    def data_hash(self) -> str:
        return hash_json({m: [s.feature_set, s.source_hash, s.n_rows] for m, s in self.sources.items()})

    def rows(self, split: str, labelled: bool = True) -> np.ndarray:
        sel = self.have & (self.fs.segments["split"].to_numpy() == split)
        return np.flatnonzero(sel & ~np.isnan(self.y)) if labelled else np.flatnonzero(sel)

    def batch(self, rows: np.ndarray) -> Batch:
        x, lengths = pad_sequences([self.seqs[i] for i in rows], self.max_len)
        y = torch.from_numpy(np.nan_to_num(self.y[rows], nan=0).astype(np.int64))
        return Batch({self.column: x, LENGTHS: lengths}, y)

    def split(self, name: str, input_kind: str = "utterance", require_labels: bool = True) -> SplitTensors:
        rows = self.rows(name, require_labels)
        if not len(rows):
            raise SplitError(f"split {name!r} has no labelled rows with words in {self.fs.meta.feature_set}")
        return SplitTensors(name, self.batch(rows), rows, self.fs.segments)


def train_text_cnn(cfg: TextCNNConfig, *, store: str | Path, dataset: str, words_feature_set: str,
                   out_feature_set: str, run_dir: str | Path | None = None) -> dict:
    """Fit on TRAIN, early-stop on VALID, save the run (default ``STORE/.runs/<dataset>/<out_feature_set>``)
    and write the penultimate features; returns metrics, the feature-set path and the run directory."""
    fs = read_feature_set(store, dataset, words_feature_set, modalities=[cfg.column])
    source = WordSequences(fs, cfg.column, cfg.max_len)
    n_train = len(source.rows("train"))
    if n_train < 2:
        raise InputError(f"text-CNN needs labelled train rows with words; {dataset}/{words_feature_set} has {n_train}")
    run_dir = Path(run_dir) if run_dir is not None else Path(store) / ".runs" / dataset / out_feature_set
    run = train(cfg.train_config(), store=store, dataset=dataset, out_dir=run_dir, prepared=source, progress=None,
                without_valid=True)
    model, info = load_run(run)
    train_acc = validate(model, source.split("train"), source.n_classes)["accuracy"]
    n_valid = len(source.rows("valid"))
    metrics = {"train_accuracy": train_acc, "valid_accuracy": info.best_valid.get("accuracy") if n_valid else None,
               "best_epoch": info.best_epoch, "epochs_run": info.epochs_run, "n_train": n_train, "n_valid": n_valid}
    feats = np.zeros((len(fs.segments), cfg.hidden), np.float32)
    rows = np.flatnonzero(source.have)
    with torch.no_grad():
        for i in range(0, len(rows), 256):
            feats[rows[i : i + 256]] = model.predict(source.batch(rows[i : i + 256]))["embedding"].numpy()
    meta = make_meta(
        dataset=dataset, feature_set=out_feature_set,
        modalities={"text": ModalitySpec(kind="vector", dim=cfg.hidden,
                                         description=f"text-CNN penultimate layer over {words_feature_set}:{cfg.column}")},
        producer=Producer.of("model", "text_cnn", {**cfg.model_dump(mode="json"),
                                                   "checkpoint_sha256": info.checkpoint_sha256}),
        source_hash=fs.meta.source_hash, label_names=fs.meta.label_names,
        lineage=[f"{dataset}/{words_feature_set}@{fs.meta.source_hash}"],
        extra={"metrics": metrics, "run": str(run), "history": pd.DataFrame(read_history(run)).to_dict("records"),
               "note": "train rows are fitted to their own labels (bc-LSTM style); valid/test rows are clean"},
    )
    path = write_feature_set(store, FeatureSet(meta, fs.segments, {"text": feats}, {"text": ~source.have}),
                             origin=f"text_cnn:{dataset}")
    return {"path": str(path), "run": str(run), **metrics}


def produce_text_cnn(cfg: TextCNNConfig, *, store: str | Path, dataset: str, words_feature_set: str,
                     out_feature_set: str) -> dict:
    """:func:`train_text_cnn`, cross-fitted when ``cfg.cross_fit`` is K >= 2 (:mod:`pipeline.crossfit`)."""
    from pipeline.crossfit import cross_fit_feature_set

    res = train_text_cnn(cfg, store=store, dataset=dataset, words_feature_set=words_feature_set,
                         out_feature_set=out_feature_set)
    if cfg.cross_fit:
        fold_cfg = cfg.model_copy(update={"cross_fit": 0})
        cross_fit_feature_set(
            store, dataset, words_feature_set, k=cfg.cross_fit, seed=cfg.seed, full=out_feature_set,
            modality="text", produce_set=lambda st, src, out: train_text_cnn(
                fold_cfg, store=st, dataset=dataset, words_feature_set=src, out_feature_set=out))
    return {**res, "cross_fit": cfg.cross_fit}
