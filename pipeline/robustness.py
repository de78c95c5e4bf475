"""Missing-modality robustness of a trained model (CyIN's protocol, MultiBench's area under the curve).

Conditions, all on one split of a saved run:

* ``complete``: every modality as stored;
* ``fixed``: every subset of modalities removed for all samples (one or two of three);
* ``random``: each (sample, modality) removed with probability ``rate`` (0.1 .. 0.7) with the one
  missing-modality protocol (:func:`models.modalities.keep_mask`, the same as training-time modality
  dropout: a sample that would lose every modality it has keeps one, chosen uniformly), over several
  seeds; the effective missing fraction is reported next to the nominal rate.

A removed modality is presented the way the store presents a missing one: ``Batch.present[m]`` False
and its input zeroed; what the model then does is its own documented ``missing_policy``. A modality
already missing in the data stays missing.

The curve is accuracy vs nominal missing rate with the complete input at rate 0; its area (trapezoid)
is divided by the width of the rate range, so ``auc`` is in accuracy units (the curve's mean height):
1.0 = perfect at every rate, the majority rate = no better than guessing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from models.base import AffectModel, Batch
from models.modalities import keep_mask
from pipeline.atomic import write_bytes_atomic
from pipeline.data import SplitTensors
from pipeline.errors import InputError
from pipeline.evaluate import flatten_outputs, metrics_from_outputs
from pipeline.provenance import StageConfig

DEFAULT_RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


class RobustnessConfig(StageConfig):
    split: str = "valid"
    rates: list[float] = Field(default_factory=lambda: list(DEFAULT_RATES))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])

    @field_validator("rates")
    @classmethod
    def _rates_in_range(cls, v: list[float]) -> list[float]:
        bad = [r for r in v if not 0.0 < r < 1.0]
        if bad or not v:
            raise ValueError(f"missing rates must be in (0, 1), got {bad or v}")
        return sorted(v)


@dataclass
class RobustnessResult:
    table: pd.DataFrame  # one row per condition (random: per rate and seed)
    curve: pd.DataFrame  # rate, accuracy mean/std, f1 mean/std, effective missing rate
    auc: float
    auc_f1: float
    majority: float

    def summary(self) -> dict:
        fixed = self.table[self.table["kind"] == "fixed"]
        complete = self.table[self.table["kind"] == "complete"].iloc[0]
        return {
            "complete_accuracy": float(complete["accuracy"]),
            "auc": self.auc,
            "auc_f1": self.auc_f1,
            "majority_accuracy": self.majority,
            "fixed": {r["condition"]: float(r["accuracy"]) for _, r in fixed.iterrows()},
            "curve": self.curve.to_dict(orient="list"),
        }


# ----------------------------------------------------------------------------- masks


def random_keep(batch: Batch, modalities: Sequence[str], rate: float, seed: int) -> torch.Tensor:
    """bool ``[*y.shape, M]`` for one seed: the one missing-modality protocol of
    :func:`models.modalities.keep_mask` (at least one of the modalities a sample has is kept)."""
    if not 0.0 <= rate < 1.0:
        raise InputError(f"missing rate must be in [0, 1), got {rate}")
    return keep_mask(batch.had(list(modalities)), rate, torch.Generator().manual_seed(seed))


def fixed_conditions(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every proper non-empty subset of modalities to REMOVE (one or two of three)."""
    return [c for r in range(1, len(modalities)) for c in combinations(modalities, r)]


# ----------------------------------------------------------------------------- evaluation


def _score(model: AffectModel, st: SplitTensors, batch: Batch, n_classes: int) -> dict:
    out = model.predict(batch)
    view = SplitTensors(st.split, batch, st.rows, st.segments, st.extras)
    m = metrics_from_outputs(flatten_outputs(view, out), n_classes)
    return {"accuracy": m["accuracy"], "f1_weighted": m["f1_weighted"], "majority": m["majority_accuracy"]}


def evaluate_robustness(model: AffectModel, st: SplitTensors, n_classes: int, cfg: RobustnessConfig | None = None) -> RobustnessResult:
    """All conditions for one model on one split (``st`` as from :func:`pipeline.data.load_split`)."""
    cfg = cfg or RobustnessConfig()
    mods = list(model.modalities)
    batch = st.batch
    have = batch.had(mods)
    real = have.any(-1)  # real samples (video-level padding excluded)
    rows: list[dict] = []
    full = torch.ones_like(have)
    base = _score(model, st, batch.with_kept(mods, full), n_classes)
    rows.append({"kind": "complete", "condition": "complete", "rate": 0.0, "seed": None,
                 "effective_rate": float(1 - have[real].float().mean()), **base})
    for removed in fixed_conditions(mods):
        keep = full.clone()
        for m in removed:
            keep[..., mods.index(m)] = False
        r = _score(model, st, batch.with_kept(mods, keep), n_classes)
        kept = "+".join(m for m in mods if m not in removed)
        rows.append({"kind": "fixed", "condition": f"-{'-'.join(removed)} (only {kept})", "rate": None,
                     "seed": None, "effective_rate": len(removed) / len(mods), **r})
    for rate in cfg.rates:
        for seed in cfg.seeds:
            keep = random_keep(batch, mods, rate, seed)
            r = _score(model, st, batch.with_kept(mods, keep), n_classes)
            eff = float(1 - (keep & have)[real].float().sum() / have[real].float().sum())
            rows.append({"kind": "random", "condition": f"random {rate:.1f}", "rate": rate, "seed": seed,
                         "effective_rate": eff, **r})
    table = pd.DataFrame(rows)
    rnd = table[table["kind"] == "random"]
    agg = rnd.groupby("rate").agg(
        accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        f1_weighted=("f1_weighted", "mean"), f1_std=("f1_weighted", "std"),
        effective_rate=("effective_rate", "mean"),
    ).reset_index()
    first = pd.DataFrame([{"rate": 0.0, "accuracy": base["accuracy"], "accuracy_std": 0.0,
                           "f1_weighted": base["f1_weighted"], "f1_std": 0.0, "effective_rate": 0.0}])
    curve = pd.concat([first, agg], ignore_index=True).sort_values("rate").reset_index(drop=True)
    return RobustnessResult(table, curve, area(curve["rate"], curve["accuracy"]),
                            area(curve["rate"], curve["f1_weighted"]), base["majority"])


def area(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoid area under ``y(x)`` divided by the x range (mean height); a single point: its height."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if len(xs) < 2 or xs.max() == xs.min():
        return float(ys.mean())
    return float(np.trapezoid(ys, xs) / (xs.max() - xs.min()))


# ----------------------------------------------------------------------------- outputs




def markdown_table(res: RobustnessResult, title: str = "") -> str:
    lines = [f"### {title}" if title else "", "",
             f"Area under the accuracy-vs-missing-rate curve (mean height, rates 0-{res.curve['rate'].max():.1f}): "
             f"**{100 * res.auc:.2f}** (F1 {100 * res.auc_f1:.2f}); majority class {100 * res.majority:.2f}.", "",
             "| condition | accuracy | F1 (weighted) | missing (effective) |", "|---|---|---|---|"]
    t = res.table
    for _, r in t[t["kind"] != "random"].iterrows():
        lines.append(f"| {r['condition']} | {100 * r['accuracy']:.2f} | {100 * r['f1_weighted']:.2f} | "
                     f"{100 * r['effective_rate']:.0f}% |")
    for _, r in res.curve[res.curve["rate"] > 0].iterrows():
        lines.append(f"| random {r['rate']:.1f} (mean +- std over seeds) | {100 * r['accuracy']:.2f} +- "
                     f"{100 * r['accuracy_std']:.2f} | {100 * r['f1_weighted']:.2f} +- {100 * r['f1_std']:.2f} | "
                     f"{100 * r['effective_rate']:.0f}% |")
    return "\n".join(lines).lstrip() + "\n"


def plot_curves(curves: dict[str, pd.DataFrame], path: Path, majority: float | None = None, title: str = "") -> Path:
    """Accuracy vs missing rate, one line (+- std band) per model; PNG via the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, c in curves.items():
        ax.plot(c["rate"], 100 * c["accuracy"], marker="o", label=name)
        ax.fill_between(c["rate"], 100 * (c["accuracy"] - c["accuracy_std"].fillna(0)),
                        100 * (c["accuracy"] + c["accuracy_std"].fillna(0)), alpha=0.2)
    if majority is not None:
        ax.axhline(100 * majority, color="grey", linestyle="--", label="majority class")
    ax.set_xlabel("missing rate per sample and modality (at least one kept)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "missing-modality robustness")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_outputs(res: RobustnessResult, out_dir: str | Path, *, title: str = "", extra: dict | None = None) -> dict[str, Path]:
    """``robustness.csv`` (every condition), ``curve.csv``, ``robustness.md``, ``robustness_curve.png``,
    ``robustness.json`` (summary + ``extra``), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": write_bytes_atomic(out / "robustness.csv", res.table.to_csv(index=False).encode()),
        "curve_csv": write_bytes_atomic(out / "curve.csv", res.curve.to_csv(index=False).encode()),
        "markdown": write_bytes_atomic(out / "robustness.md", markdown_table(res, title).encode()),
        "json": write_bytes_atomic(out / "robustness.json",
                             json.dumps({**(extra or {}), **res.summary()}, indent=2).encode()),
    }
    paths["png"] = plot_curves({title or "model": res.curve}, out / "robustness_curve.png", res.majority, title)
    return {k: Path(v) for k, v in paths.items()}


def robustness_run(run_dir: str | Path, cfg: RobustnessConfig | None = None, *, out_dir: str | Path | None = None,
                   store: str | Path | None = None) -> tuple[RobustnessResult, dict[str, Path]]:
    """Load a saved run (:func:`pipeline.checkpoint.load_run`), evaluate every condition on
    ``cfg.split``, write the outputs to ``out_dir`` (default ``RUN_DIR/robustness/<split>``)."""
    from pipeline.checkpoint import load_run
    from pipeline.data import load_split

    cfg = cfg or RobustnessConfig()
    model, info = load_run(run_dir)
    st = load_split(info, cfg.split, store=store)
    torch.manual_seed(0)  # models that sample at test time (none here in eval mode) stay reproducible
    res = evaluate_robustness(model, st, info.n_classes, cfg)
    dest = Path(out_dir) if out_dir is not None else Path(run_dir) / "robustness" / cfg.split
    extra = {"run": str(run_dir), "model": info.model, "missing_policy": type(model).missing_policy,
             "dataset": info.dataset, "split": cfg.split, "config": cfg.model_dump(), "config_hash": cfg.config_hash()}
    paths = write_outputs(res, dest, title=f"{info.model} on {info.dataset}/{cfg.split}", extra=extra)
    return res, paths
