"""Publish a rebuild's report: files next to the run's outputs first, Prefect artifacts second.

The files (``<out>/report/report.md``, ``metrics.json``, PNGs, and each run's ``plots/``) exist without
the Prefect UI; the artifacts make the same content browsable per flow run: the report in markdown with
its plots inline (``data:`` URIs, which the UI renders; a path or ``file://`` link would point at a
machine the browser cannot read), the tables, and one markdown artifact per plot. Plotting itself is pure and lives in :mod:`pipeline.report`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline import report as R
from pipeline.atomic import write_text_atomic


def _artifact_key(*parts: str) -> str:
    # Prefect artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def read_quarantine(store: Path, dataset: str) -> pd.DataFrame:
    frames = []
    for p in sorted((store / dataset / "_quarantine").glob("[!.]*.parquet")):
        q = pd.read_parquet(p)
        q.insert(0, "feature_set", p.stem)
        frames.append(q)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_plots(run_dir: Path, split: str, store: Path, metrics: dict, dest: Path, name: str, seed: int) -> dict[str, Path]:
    """Confusion matrix, training curves, t-SNE of ``embedding`` and GFN ``vertex_weights`` of one run."""
    from pipeline.checkpoint import read_history
    from pipeline.evaluate import predict_run

    plots: dict[str, Path] = {}
    class_names = list(metrics.get("per_class_accuracy", {}).keys()) or None
    cm = metrics.get("confusion_matrix")
    if cm is not None:
        names = class_names or [str(i) for i in range(len(cm))]
        plots[f"{name} confusion"] = R.plot_confusion(cm, names, dest / f"{name}-confusion.png",
                                                      f"{name} on {split} (n={metrics.get('n')})")
    history = pd.DataFrame(read_history(run_dir))
    if not history.empty:
        plots[f"{name} training"] = R.plot_training_curves(history, dest / f"{name}-training.png", f"{name} training")
    pred = predict_run(run_dir, split, store=store)
    labels = pred.get("labels", pred.get("label"))
    names = class_names or [str(i) for i in sorted(set(labels.tolist()))]
    if "embedding" in pred and labels is not None:
        plots[f"{name} t-SNE"] = R.plot_tsne(pred["embedding"], labels, names, dest / f"{name}-tsne.png", seed,
                                             f"{name}: t-SNE of the joint embedding ({split})")
    if "vertex_weights" in pred and labels is not None:
        plots[f"{name} vertex weights"] = R.plot_vertex_weights(
            pred["vertex_weights"], labels, dest / f"{name}-vertex-weights.png",
            title=f"{name}: GFN vertex weights per sample ({split})")
    return plots


@task(name="report", task_run_name="report-{cfg.dataset}")
def publish_report(cfg: Any, results: dict[str, dict], runs: dict[str, str], stages: list[dict],
                   store: Path, out: Path) -> Path:
    """Write report.md, metrics.json and plots under ``<out>/report`` (and each run's ``plots/``)."""
    log = get_run_logger()
    dest = out / "report"
    dest.mkdir(parents=True, exist_ok=True)
    from pipeline.store import store_summary

    dataset_rows = [r for r in store_summary(store) if r.get("dataset") == cfg.dataset]
    quarantine = read_quarantine(store, cfg.dataset)
    plots: dict[str, Path] = {}
    for name, run_dir in runs.items():
        try:
            p = run_plots(Path(run_dir), cfg.split, store, results[name], dest, name, cfg.seed)
        except Exception as e:  # a plot must never sink the rebuild; the report says what is missing
            log.warning("plots for %s failed: %s", name, e)
            continue
        plots.update(p)
        run_plot_dir = Path(run_dir) / "plots"
        run_plot_dir.mkdir(exist_ok=True)
        for f in p.values():
            shutil.copyfile(f, run_plot_dir / f.name)
    audit_md = _audit(store, cfg.dataset, cfg.context_features, dest / "feature-audit.png", plots)
    class_names = next((list(r.get("per_class_accuracy", {})) for r in results.values()), [])
    report = dict(
        title=f"affectflow rebuild: {cfg.dataset}",
        dataset_rows=R.dataset_rows(dataset_rows), results=results, class_names=class_names,
        quarantine=quarantine, stages=stages, plots=plots,
        notes=[f"source: {cfg.corpus or 'embedded MOSI bc-LSTM features (data/mosi)'}",
               f"metrics on split `{cfg.split}`; fusion models: {', '.join(cfg.fusion)}; seed {cfg.seed}"],
    )
    # On disk the report links the PNGs beside it; in the UI the same report carries them inline.
    path = write_text_atomic(dest / "report.md", f"{R.render_markdown(**report)}\n{audit_md}")
    write_text_atomic(dest / "metrics.json", json.dumps(results, indent=2, default=str))
    write_text_atomic(dest / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2))
    _artifacts(cfg.dataset, f"{R.render_markdown(**report, image_src=R.data_uri)}\n{audit_md}", results, class_names,
               quarantine, plots)
    return path


def _audit(store: Path, dataset: str, features: str, png: Path, plots: dict[str, Path]) -> str:
    """Markdown section: the audit (pipeline/audit.py) of the features the fusion models trained on."""
    from pipeline.audit import audit_features, format_audit, plot_audit
    from pipeline.errors import AffectflowError

    try:
        res = audit_features(store, dataset, features)
    except AffectflowError as e:  # e.g. a smoke corpus with fewer training videos than folds
        return f"## Feature audit ({features})\n\nnot run: {e}\n"
    plots["feature audit"] = plot_audit(res, png, f"feature audit: {dataset}/{features}")
    flagged = ", ".join(res["leaking"]) or "none"
    return f"## Feature audit ({features})\n\n{format_audit(res)}\n\nleaking: {flagged}\n"


def _artifacts(dataset: str, text: str, results: dict, class_names: list[str], quarantine: pd.DataFrame,
               plots: dict[str, Path]) -> None:
    """The report (plots inline as data: URIs, which the UI renders), its tables, one artifact per plot."""
    create_markdown_artifact(text, key=_artifact_key("rebuild-report", dataset), description="rebuild report")
    create_table_artifact(R.metrics_rows(results), key=_artifact_key("metrics", dataset),
                          description="metrics (%) per model")
    per_class = R.per_class_rows(results, class_names)
    if per_class:
        create_table_artifact(per_class, key=_artifact_key("per-class", dataset), description="per-class accuracy (%)")
    q_rows = R.quarantine_rows(quarantine)
    q_key, q_desc = _artifact_key("quarantine", dataset), "quarantined items by stage, modality and reason"
    if q_rows:
        create_table_artifact(q_rows, key=q_key, description=q_desc)
    else:
        create_markdown_artifact(R.NO_QUARANTINE, key=q_key, description=q_desc)
    for name, p in plots.items():
        create_markdown_artifact(R.plot_markdown(name, p, R.data_uri), key=_artifact_key("plot", dataset, name),
                                 description=f"plot: {name}")
