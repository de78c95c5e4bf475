"""Pure report building: PNG plots and a markdown report of one rebuild (no Prefect here).

``flows/report.py`` publishes the same content as Prefect artifacts; everything is also written next to
the run's outputs so it exists without the Prefect UI. Plots: confusion matrix, training curves, t-SNE of
ARGF's joint embedding (the paper's Fig. 5) and GFN vertex weights per sample (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path


def _plt():
    # Agg: no display on servers/CI; imported lazily so importing this module stays cheap.
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure atomically (temp name + rename), so a killed run never leaves a half PNG."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def plot_confusion(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = "") -> Path:
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(cm), 1.0 + 0.9 * len(cm)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{int(v)}", ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    return _save(fig, path)


def plot_training_curves(history: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Loss-like columns on the left axis, metrics (accuracy/F1) on the right, against the epoch."""
    plt = _plt()
    x = history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)
    numeric = [c for c in history.select_dtypes("number").columns if c != "epoch"]
    losses = [c for c in numeric if "loss" in c]
    metrics = [c for c in numeric if c not in losses and any(k in c for k in ("acc", "f1", "mae", "corr"))]
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in losses:
        ax.plot(x, history[c], label=c)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if metrics:
        ax2 = ax.twinx()
        for c in metrics:
            ax2.plot(x, history[c], linestyle="--", label=c)
        ax2.set_ylabel("metric")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
        ax.legend(lines, labels, fontsize=7, loc="best")
    elif losses:
        ax.legend(fontsize=7)
    ax.set_title(title or "training curves")
    return _save(fig, path)


def tsne_2d(embedding: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    emb = np.asarray(embedding, dtype=np.float64).reshape(len(embedding), -1)
    perplexity = float(min(30.0, max(2.0, (len(emb) - 1) / 3)))
    # One BLAS/OpenMP thread: on a busy 2-core machine the default pool made this 20x slower (51 s vs 2.6 s).
    with threadpool_limits(1):
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
        return tsne.fit_transform(emb)


def plot_tsne(
    embedding: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path, seed: int = 0, title: str = ""
) -> Path:
    """t-SNE of the joint embedding coloured by true class (ARGF Fig. 5)."""
    plt = _plt()
    xy = tsne_2d(embedding, seed)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, name in enumerate(class_names):
        sel = labels == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, label=f"{name} ({int(sel.sum())})")
    ax.legend(fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of the joint embedding")
    return _save(fig, path)


def plot_vertex_weights(
    weights: np.ndarray, labels: np.ndarray, path: Path, vertex_names: Sequence[str] | None = None, title: str = ""
) -> Path:
    """GFN vertex weights per sample (ARGF Fig. 6): heat map of samples (sorted by class) x vertices."""
    plt = _plt()
    w = np.asarray(weights, dtype=float).reshape(len(weights), -1)
    order = np.argsort(np.asarray(labels), kind="stable")
    names = list(vertex_names) if vertex_names and len(vertex_names) == w.shape[1] else [f"v{i}" for i in range(w.shape[1])]
    fig, (ax, axm) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    im = ax.imshow(w[order].T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("sample (sorted by true class)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    axm.barh(range(len(names)), w.mean(axis=0))
    axm.set_yticks(range(len(names)), names, fontsize=7)
    axm.invert_yaxis()
    axm.set_title("mean weight", fontsize=9)
    ax.set_title(title or "GFN vertex weights per sample")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- markdown

# Metrics shown as percentages with two decimals (one MOSI valid utterance = 0.42 points), in this order.
PERCENT_METRICS = {"accuracy": "accuracy (%)", "f1_weighted": "weighted F1 (%)", "f1_macro": "macro F1 (%)",
                   "majority_accuracy": "majority class (%)", "acc7": "7-class accuracy (%)"}
OTHER_METRICS = {"mae": "MAE", "pearson_r": "Pearson r"}
NO_QUARANTINE = "No items quarantined."


def pct(v: float | None) -> float | None:
    return None if v is None else round(100 * float(v), 2)


def data_uri(path: Path) -> str:
    """A PNG as a ``data:`` URI: the Prefect UI renders these inside a markdown artifact, where a path
    or a ``file://`` link points at a machine the browser cannot read."""
    import base64

    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    # The union over all rows in first-seen order: a key only some rows have still gets its column.
    return list(dict.fromkeys(k for r in rows for k in r))


def _md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(none)_\n"
    columns = list(columns or _columns(rows))

    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):  # rounded where made (percent 2 decimals, r/MAE 4): print no float noise
            return f"{v:.2f}" if round(v, 2) == v else f"{round(v, 4)}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def metrics_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """One row per model: split, n, the classification metrics in percent, the selected epoch."""
    rows = []
    for name, m in results.items():
        row: dict[str, Any] = {"model": name, "split": m.get("split"), "n": m.get("n")}
        row.update({label: pct(m[k]) for k, label in PERCENT_METRICS.items() if m.get(k) is not None})
        row.update({label: round(float(m[k]), 4) for k, label in OTHER_METRICS.items() if m.get(k) is not None})
        if m.get("best_epoch") is not None:
            row["best epoch"] = m["best_epoch"]
        rows.append(row)
    return rows


def per_class_rows(results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> list[dict]:
    rows = []
    for name, m in results.items():
        pca = m.get("per_class_accuracy")
        if pca is None:
            continue
        values = list(pca.values()) if isinstance(pca, Mapping) else list(pca)
        keys = list(pca.keys()) if isinstance(pca, Mapping) else list(class_names)[: len(values)]
        counts = m.get("class_counts") or {}
        for k, v in zip(keys, values, strict=False):
            # None = the class has no samples in this split (accuracy undefined, not 0).
            rows.append({"model": name, "class": k, "n": counts.get(k), "accuracy (%)": pct(v)})
    return rows


def _split_text(entry: Mapping[str, Any]) -> str:
    parts = [f"{entry['rows']} rows"] if "rows" in entry else []
    if "positive" in entry:
        parts.append(f"{entry['positive']} positive")
    if "classes" in entry:
        parts.append("classes " + " ".join(f"{k}:{v}" for k, v in entry["classes"].items()))
    return ", ".join(parts)


def dataset_rows(store_rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """``pipeline.store.store_summary`` rows as short text cells (no nested JSON, no absolute paths)."""
    rows = []
    for r in store_rows:
        if "error" in r:
            rows.append({"feature set": Path(r["path"]).stem, "error": r["error"]})
            continue
        rows.append({
            "feature set": r["feature_set"], "rows": r["rows"],
            "modalities": ", ".join(f"{m} {spec}" for m, spec in r["modalities"].items()),
            "splits": "; ".join(f"{s}: {_split_text(e)}" for s, e in r["splits"].items()),
            "producer": r["producer"], "source hash": r["source_hash"],
        })
    return rows


def stage_rows(stages: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Stages with a readable ``recomputed`` (yes / from cache) and run directories as ``<stage>/<key>``."""
    rows = []
    for st in stages:
        row = dict(st)
        if isinstance(row.get("recomputed"), bool):
            row["recomputed"] = "yes" if row["recomputed"] else "no (from cache)"
        what = str(row.get("what", ""))
        if Path(what).is_absolute():
            row["what"] = "/".join(Path(what).parts[-2:])
        rows.append(row)
    return rows


def quarantine_rows(quarantine: pd.DataFrame | None) -> list[dict]:
    """Counts per (stage, modality, reason) — the reasons are what a user needs to fix the input."""
    if quarantine is None or quarantine.empty:
        return []
    q = quarantine.fillna({"modality": "-", "stage": "-"})
    g = q.groupby(["stage", "modality", "reason"], dropna=False).size().reset_index(name="items")
    return g.sort_values("items", ascending=False).to_dict("records")


def quarantine_markdown(quarantine: pd.DataFrame | None) -> str:
    rows = quarantine_rows(quarantine)
    return _md_table(rows) if rows else NO_QUARANTINE + "\n"


def plot_markdown(name: str, path: Path, image_src: Callable[[Path], str]) -> str:
    return f"### {name}\n\n![{name}]({image_src(Path(path))})\n"


def render_markdown(
    *,
    title: str,
    dataset_rows: Sequence[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    quarantine: pd.DataFrame | None,
    stages: Sequence[Mapping[str, Any]] = (),
    plots: Mapping[str, Path] | None = None,
    notes: Sequence[str] = (),
    image_src: Callable[[Path], str] = lambda p: p.name,
) -> str:
    """The report. ``dataset_rows`` as :func:`dataset_rows` makes them; ``image_src``: how a plot is
    referenced (its file name next to report.md, or :func:`data_uri` for the Prefect UI)."""
    parts = [f"# {title}\n"]
    parts += [f"- {n}" for n in notes]
    if notes:
        parts.append("")
    parts += ["## Dataset\n", _md_table(list(dataset_rows))]
    if stages:
        parts += ["## Stages\n", _md_table(stage_rows(stages))]
    parts += ["## Metrics\n", _md_table(metrics_rows(results))]
    parts += ["## Per-class results\n", _md_table(per_class_rows(results, class_names))]
    n_q = 0 if quarantine is None else len(quarantine)
    parts += [f"## Quarantine ({n_q} records)\n", quarantine_markdown(quarantine)]
    if plots:
        parts.append("## Plots\n")
        parts += [plot_markdown(name, p, image_src) for name, p in plots.items()]
    return "\n".join(parts)
