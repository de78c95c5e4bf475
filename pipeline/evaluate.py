"""Evaluation of a saved run on one split, and the metrics every model is scored with.

Classification metrics (always): ``accuracy``, ``f1_weighted`` (sklearn, weighted by support, as in
ARGF's code), ``f1_macro``, ``per_class_accuracy`` (recall of each class: the paper's per-emotion
accuracy in Tables 2-3), ``confusion_matrix`` (rows = true, columns = predicted), class counts.

Continuous scores (MOSI/MOSEI sentiment in [-3, 3]): ``mae``, ``pearson_r`` and ``acc7`` (score rounded
and clipped to the seven integers) are computed only when the model itself predicts a score
(``out["score"]``). Classification models do not: we do not invent a score from class probabilities,
so those three are ``null`` and ``score_metrics`` says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from pipeline.checkpoint import load_run
from pipeline.data import SplitTensors, device_of, load_split

NO_SCORE = "the model predicts classes only; MAE, Pearson r and 7-class accuracy need a predicted score"


def classification_metrics(y: np.ndarray, pred: np.ndarray, n_classes: int, label_names: list[str] | None = None) -> dict:
    names = label_names if label_names and len(label_names) == n_classes else [str(c) for c in range(n_classes)]
    cm = confusion_matrix(y, pred, labels=list(range(n_classes)))
    support = cm.sum(1)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "f1_weighted": float(f1_score(y, pred, average="weighted", labels=list(range(n_classes)), zero_division=0)),
        "f1_macro": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
        "per_class_accuracy": {names[c]: (float(cm[c, c] / support[c]) if support[c] else None) for c in range(n_classes)},
        "class_counts": {names[c]: int(support[c]) for c in range(n_classes)},
        "confusion_matrix": cm.tolist(),
        "majority_accuracy": float(support.max() / max(support.sum(), 1)),
    }


def score_metrics(true_score: np.ndarray, pred_score: np.ndarray) -> dict:
    ok = np.isfinite(true_score)
    t, p = true_score[ok], pred_score[ok]
    r = float(pearsonr(t, p)[0]) if len(t) > 1 and t.std() > 0 and p.std() > 0 else None
    acc7 = float((np.clip(np.round(t), -3, 3) == np.clip(np.round(p), -3, 3)).mean())
    return {"mae": float(np.abs(t - p).mean()), "pearson_r": r, "acc7": acc7}


def flatten_outputs(st: SplitTensors, out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-utterance arrays from a model output; video-level outputs are unpadded with the mask."""
    res: dict[str, np.ndarray] = {}
    n_samples = st.batch.size
    mask = st.batch.mask
    for key, val in out.items():
        if not isinstance(val, torch.Tensor) or val.dim() == 0 or val.shape[0] != n_samples:
            continue
        if mask is not None and val.dim() >= 2 and tuple(val.shape[:2]) == tuple(mask.shape):
            val = val[mask]
        res[key] = val.detach().cpu().numpy()
    y = st.batch.y[mask] if mask is not None else st.batch.y
    score = st.batch.score[mask] if (mask is not None and st.batch.score is not None) else st.batch.score
    res["labels"] = y.cpu().numpy()
    if score is not None:
        res["true_score"] = score.cpu().numpy()
    return res


def metrics_from_outputs(flat: dict[str, np.ndarray], n_classes: int, label_names: list[str] | None = None) -> dict:
    y = flat["labels"]
    pred = flat["logits"].argmax(-1)
    metrics = classification_metrics(y, pred, n_classes, label_names)
    has_scores = "true_score" in flat and np.isfinite(flat["true_score"]).any()
    if has_scores and "score" in flat:
        metrics.update(score_metrics(flat["true_score"], flat["score"].reshape(-1)))
        metrics["score_metrics"] = "computed"
    elif has_scores:
        metrics.update({"mae": None, "pearson_r": None, "acc7": None, "score_metrics": NO_SCORE})
    return metrics


@torch.no_grad()
def predict_split(model, st: SplitTensors, device: str = "cpu") -> dict[str, np.ndarray]:
    """Outputs per utterance; the model and the split's tensors go to ``device`` (auto, cpu, cuda)."""
    dev = device_of(device)
    model.to(dev)
    out = model.predict(st.batch.to(dev))
    flat = flatten_outputs(st, out)
    rows = st.flat_rows()
    flat["segment_id"] = st.segments["segment_id"].to_numpy()[rows]
    flat["video_id"] = st.segments["video_id"].to_numpy()[rows]
    flat["pred"] = flat["logits"].argmax(-1)
    flat["probs"] = torch.softmax(torch.from_numpy(flat["logits"]), -1).numpy()
    return flat


def predict_run(run_dir: str | Path, split: str = "valid", *, store: str | Path | None = None,
                device: str = "cpu") -> dict[str, np.ndarray]:
    """Logits, probabilities, predictions, labels, ids and the model's extras (embedding, vertex_weights,
    context, ...) per utterance of ``split``; for plots (t-SNE, vertex weights) and error analysis."""
    model, info = load_run(run_dir)
    st = load_split(info, split, store=store)
    return predict_split(model, st, device)


def evaluate_run(run_dir: str | Path, split: str = "valid", *, store: str | Path | None = None,
                 device: str = "cpu") -> dict:
    """Metrics of a saved run on ``split``; an absent split raises :class:`pipeline.errors.SplitError`."""
    model, info = load_run(run_dir)
    st = load_split(info, split, store=store)
    flat = predict_split(model, st, device)
    metrics = metrics_from_outputs(flat, info.n_classes, info.label_names)
    return {
        "run": str(run_dir), "model": info.model, "dataset": info.dataset, "split": split,
        "features": info.features, "best_epoch": info.best_epoch, **metrics,
    }


def format_metrics(res: dict) -> str:
    lines = [
        f"{res['model']} on {res['dataset']}/{res['split']} (n={res['n']}, best epoch {res.get('best_epoch')})",
        f"  accuracy     {100 * res['accuracy']:.2f}   (majority {100 * res['majority_accuracy']:.2f})",
        f"  f1_weighted  {100 * res['f1_weighted']:.2f}",
        "  per class    " + ", ".join(
            f"{k} {'-' if v is None else f'{100 * v:.1f}'}" for k, v in res["per_class_accuracy"].items()
        ),
        "  confusion    " + str(res["confusion_matrix"]),
    ]
    if res.get("score_metrics") == "computed":
        r = res["pearson_r"]
        lines.append(f"  mae {res['mae']:.3f}  pearson_r {'-' if r is None else f'{r:.3f}'}  acc7 {100 * res['acc7']:.2f}")
    elif "score_metrics" in res:
        lines.append(f"  (no MAE / r / acc7: {res['score_metrics']})")
    return "\n".join(lines)
