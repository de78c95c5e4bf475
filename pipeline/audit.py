"""Leakage you can see: does a feature set say more about its training rows than about unseen videos?

Per modality, a probe (standardised L2 logistic regression) is scored three ways:

* **inside train**: K-fold accuracy over the training rows, folds grouped by video (the folds of
  :func:`pipeline.crossfit.video_folds`); the probe's C is the grid point with the best such accuracy,
  so every choice is made inside train;
* **held out**: accuracy on valid (and on test when the store has it) of the probe fitted on all of train;
* **interval**: a bootstrap over the held-out *videos* (utterances of one video are not independent).

A modality is flagged as **leaking** when its inside-train accuracy lies above the upper end of the
held-out interval of the reference split (valid; test only when there is no valid split; no verdict
with fewer than ``min_heldout_videos`` held-out videos): features
written by a network fitted on the training rows' labels separate those rows far better than any
unseen video. Features that are honest score about the same inside train and held out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.baselines import C_GRID
from pipeline.crossfit import video_folds
from pipeline.data import FeaturesArg, LabelKind, labels, load_joined, resolve_label_kind
from pipeline.errors import SplitError
from pipeline.provenance import StageConfig
from pipeline.store import SPLITS


class AuditConfig(StageConfig):
    k: int = Field(5, ge=2, description="folds (grouped by video) inside train")
    n_boot: int = Field(1000, ge=10, description="bootstrap draws over the held-out videos")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="interval coverage")
    c_grid: tuple[float, ...] = C_GRID
    seed: int = 0
    label: LabelKind = "auto"
    # Below this many held-out videos the interval says nothing (a 3-clip smoke corpus): no verdict.
    min_heldout_videos: int = Field(5, ge=1)


def _probe(c: float, seed: int):  # noqa: ANN202 - an sklearn pipeline
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))


def _inside_train(x: np.ndarray, y: np.ndarray, fold: np.ndarray, cfg: AuditConfig) -> tuple[float, float]:
    """(best grouped K-fold accuracy over the C grid, its C); ties go to the smaller C."""
    best = (-1.0, 0.0)
    for c in cfg.c_grid:
        correct = sum(int((_probe(c, cfg.seed).fit(x[fold != f], y[fold != f]).predict(x[fold == f]) == y[fold == f]).sum())
                      for f in range(cfg.k))
        acc = correct / len(y)
        if acc > best[0] or (acc == best[0] and c < best[1]):
            best = (acc, c)
    return best


def _bootstrap(hit: np.ndarray, video: np.ndarray, cfg: AuditConfig) -> tuple[float, float]:
    """Percentile interval of the accuracy when the held-out videos are resampled with replacement."""
    vids, inv = np.unique(video, return_inverse=True)
    correct = np.bincount(inv, weights=hit.astype(float), minlength=len(vids))
    count = np.bincount(inv, minlength=len(vids)).astype(float)
    draws = np.random.default_rng(cfg.seed).integers(0, len(vids), size=(cfg.n_boot, len(vids)))
    acc = correct[draws].sum(1) / count[draws].sum(1)
    tail = 100 * (1 - cfg.level) / 2
    return float(np.percentile(acc, tail)), float(np.percentile(acc, 100 - tail))


def audit_features(store: str | Path, dataset: str, features: FeaturesArg = None,
                   cfg: AuditConfig | None = None, modalities: Sequence[str] | None = None) -> dict:
    """The audit of every modality of ``features`` (see the module docstring); JSON-ready."""
    cfg = cfg or AuditConfig()
    joined = load_joined(store, dataset, features, list(modalities) if modalities else None)
    y, _ = labels(joined, resolve_label_kind(joined.segments, cfg.label))
    split = joined.segments["split"].to_numpy()
    video = joined.segments["video_id"].to_numpy()
    heldout = [s for s in SPLITS if s != "train" and ((split == s) & (y >= 0)).any()]
    if not ((split == "train") & (y >= 0)).any() or not heldout:
        raise SplitError(f"{dataset}: the audit needs labelled train rows and a labelled valid or test split "
                         f"(has {joined.splits()})")
    folds = video_folds(joined.segments, cfg.k, cfg.seed)
    out = {"dataset": dataset, "config": cfg.model_dump(mode="json"), "reference_split": heldout[0], "modalities": {}}
    for m, x in joined.x.items():
        ok = (y >= 0) & ~joined.missing[m]
        tr = ok & (split == "train")
        fold = np.array([folds.get(v, -1) for v in video[tr]])
        inside, c = _inside_train(x[tr], y[tr], fold, cfg)
        probe = _probe(c, cfg.seed).fit(x[tr], y[tr])
        res: dict = {"feature_set": joined.sources[m].feature_set, "producer": joined.sources[m].producer,
                     "inside_train": inside, "C": c, "n_train": int(tr.sum()), "n_train_videos": len(set(video[tr]))}
        for s in heldout:
            rows = ok & (split == s)
            hit = probe.predict(x[rows]) == y[rows]
            lo, hi = _bootstrap(hit, video[rows], cfg)
            res[s] = {"accuracy": float(hit.mean()), "lo": lo, "hi": hi, "n": int(rows.sum()),
                      "n_videos": len(set(video[rows]))}
        ref = res[heldout[0]]
        res["gap"] = inside - ref["accuracy"]
        res["decided"] = ref["n_videos"] >= cfg.min_heldout_videos
        res["leaking"] = bool(res["decided"] and inside > ref["hi"])
        out["modalities"][m] = res
    out["leaking"] = [m for m, r in out["modalities"].items() if r["leaking"]]
    return out


def format_audit(res: dict) -> str:
    """A markdown table: one row per modality, with the verdict and the numbers behind it."""
    ref = res["reference_split"]
    lines = [f"| modality | feature set | inside train ({res['config']['k']}-fold by video) | {ref} "
             f"[{100 * res['config']['level']:.0f}% interval] | gap | verdict |", "|---|---|---|---|---|---|"]
    for m, r in res["modalities"].items():
        h = r[ref]
        verdict = "**LEAKING**: inside train above the interval" if r["leaking"] else "ok" if r["decided"] else \
            f"no verdict: {h['n_videos']} held-out videos (< {res['config']['min_heldout_videos']})"
        lines.append(f"| {m} | {r['feature_set']} ({r['producer']}) | {100 * r['inside_train']:.2f} | "
                     f"{100 * h['accuracy']:.2f} [{100 * h['lo']:.2f}, {100 * h['hi']:.2f}] | "
                     f"{100 * r['gap']:+.2f} | {verdict} |")
    return "\n".join(lines)


def plot_audit(res: dict, path: str | Path, title: str = "") -> Path:
    """Per modality: inside-train accuracy next to the held-out accuracy with its interval."""
    from pipeline.report import _plt, _save

    plt = _plt()
    ref = res["reference_split"]
    mods = list(res["modalities"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(mods), 3.6))
    xs = np.arange(len(mods))
    rs = [res["modalities"][m] for m in mods]
    ax.scatter(xs - 0.12, [100 * r["inside_train"] for r in rs], marker="s", color="tab:blue", label="inside train")
    acc = np.array([100 * r[ref]["accuracy"] for r in rs])
    err = np.array([[a - 100 * r[ref]["lo"], 100 * r[ref]["hi"] - a] for a, r in zip(acc, rs, strict=True)]).T
    ax.errorbar(xs + 0.12, acc, yerr=err, fmt="o", color="tab:orange", capsize=4, label=f"{ref} (interval)")
    for x, r in zip(xs, rs, strict=True):
        if r["leaking"]:
            ax.annotate("leaking", (x, 100 * r["inside_train"]), textcoords="offset points", xytext=(0, 6),
                        ha="center", color="tab:red", fontsize=8)
    ax.set_xticks(xs, [f"{m}\n{res['modalities'][m]['feature_set']}" for m in mods], fontsize=8)
    ax.set_ylabel("probe accuracy (%)")
    ax.set_title(title or f"feature audit: {res['dataset']}")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, Path(path))
