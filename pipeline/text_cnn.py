"""Train the text-CNN on a corpus's TRAIN labels over its stored word sequences; write its features.

bc-LSTM style: the CNN (``models/textcnn.py``) is fitted on the training split's labels, early-stopped
on the valid split (the only split any choice is made on), and its penultimate layer (100-d) is written
for *every* row as a new feature set ``<dataset>/<out_feature_set>`` (kind ``model``, lineage to the word
sequences). Train-split features are therefore fitted to their own labels (as the published bc-LSTM
features were); valid/test rows are clean. Rows without words stay missing. Seeds fixed; one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from models.textcnn import TextCNN, pad_sequences
from pipeline.errors import InputError
from pipeline.provenance import StageConfig
from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, read_feature_set, write_feature_set


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
    cross_fit: int = Field(0, description="K >= 2: train rows' features from K fold models grouped by video")


def _labels(fs: FeatureSet) -> tuple[np.ndarray, int]:
    seg = fs.segments
    if seg["label_bin"].notna().any():
        return seg["label_bin"].to_numpy(dtype=float), 2
    if seg["label_class"].notna().any():
        y = seg["label_class"].to_numpy(dtype=float)
        return y, int(np.nanmax(y)) + 1
    raise InputError(f"{fs.meta.dataset}/{fs.meta.feature_set} has no labels to train the text-CNN on")


def _batches(idx: np.ndarray, size: int, rng: np.random.Generator | None):
    idx = rng.permutation(idx) if rng is not None else idx
    for i in range(0, len(idx), size):
        yield idx[i : i + size]


def _accuracy(model: TextCNN, seqs, y, idx, cfg) -> float:
    if len(idx) == 0:
        return float("nan")
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in _batches(idx, 256, None):
            x, lengths = pad_sequences([seqs[i] for i in b], cfg.max_len)
            correct += int((model(x, lengths).argmax(1).numpy() == y[b]).sum())
    return correct / len(idx)


def train_text_cnn(cfg: TextCNNConfig, *, store: str | Path, dataset: str, words_feature_set: str,
                   out_feature_set: str) -> dict:
    """Fit on TRAIN, early-stop on VALID, write penultimate features; returns metrics and the path."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(cfg.seed)
    fs = read_feature_set(store, dataset, words_feature_set, modalities=[cfg.column])
    raw = fs.features[cfg.column]
    y, n_classes = _labels(fs)
    have = np.array([s is not None and len(s) > 0 for s in raw])
    split = fs.segments["split"].to_numpy()
    tr = np.flatnonzero(have & (split == "train") & ~np.isnan(y))
    va = np.flatnonzero(have & (split == "valid") & ~np.isnan(y))
    if len(tr) < 2:
        raise InputError(f"text-CNN needs labelled train rows with words; {dataset}/{words_feature_set} has {len(tr)}")
    seqs = [torch.from_numpy(np.asarray(s, np.float32)) if s is not None and len(s) else None for s in raw]
    yi = np.nan_to_num(y, nan=-1).astype(np.int64)
    dim = fs.meta.modalities[cfg.column].dim
    model = TextCNN(dim, n_classes, filters=cfg.filters, kernel_sizes=cfg.kernel_sizes, hidden=cfg.hidden,
                    dropout=cfg.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(cfg.epochs):
        model.train()
        for b in _batches(tr, cfg.batch_size, rng):
            x, lengths = pad_sequences([seqs[i] for i in b], cfg.max_len)
            loss = torch.nn.functional.cross_entropy(model(x, lengths), torch.from_numpy(yi[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        tr_acc, va_acc = _accuracy(model, seqs, yi, tr, cfg), _accuracy(model, seqs, yi, va, cfg)
        history.append({"epoch": epoch, "train_accuracy": tr_acc, "valid_accuracy": va_acc})
        score = va_acc if len(va) else -epoch  # no valid split: keep the last epoch
        if score > best:
            best, best_state, stale = score, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            stale += 1
            if len(va) and stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    feats = np.zeros((len(seqs), cfg.hidden), np.float32)
    rows = np.flatnonzero(have)
    with torch.no_grad():
        for b in _batches(rows, 256, None):
            x, lengths = pad_sequences([seqs[i] for i in b], cfg.max_len)
            feats[b] = model.features(x, lengths).numpy()
    best_epoch = max(history, key=lambda h: h["valid_accuracy"] if len(va) else h["epoch"])
    metrics = {"train_accuracy": best_epoch["train_accuracy"], "valid_accuracy": best_epoch["valid_accuracy"],
               "best_epoch": best_epoch["epoch"], "epochs_run": len(history), "n_train": len(tr), "n_valid": len(va)}
    meta = make_meta(
        dataset=dataset, feature_set=out_feature_set,
        modalities={"text": ModalitySpec(kind="vector", dim=cfg.hidden,
                                         description=f"text-CNN penultimate layer over {words_feature_set}:{cfg.column}")},
        producer=Producer.of("model", "text_cnn", cfg.model_dump(mode="json")),
        source_hash=fs.meta.source_hash, label_names=fs.meta.label_names,
        lineage=[f"{dataset}/{words_feature_set}@{fs.meta.source_hash}"],
        extra={"metrics": metrics, "history": history,
               "note": "train rows are fitted to their own labels (bc-LSTM style); valid/test rows are clean"},
    )
    path = write_feature_set(store, FeatureSet(meta, fs.segments, {"text": feats}, {"text": ~have}),
                             origin=f"text_cnn:{dataset}")
    return {"path": str(path), **metrics}


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
