"""``robustness``: a thin Prefect flow over :func:`pipeline.robustness.robustness_run` for one or more
run directories; publishes the table as a markdown artifact and the AUCs as a table artifact.
All logic lives in ``pipeline.robustness``; expected failures are permanent (no retries)."""

from __future__ import annotations

import re

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.ui import run_name


def _key(*parts: str) -> str:
    # Prefect artifact keys: lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


@task(name="robustness-run", retries=0)
def robustness_task(run_dir: str, config: dict, out_dir: str | None = None, store: str | None = None) -> dict:
    from pipeline.robustness import RobustnessConfig, markdown_table, robustness_run

    cfg = RobustnessConfig(**config)
    res, paths = robustness_run(run_dir, cfg, out_dir=out_dir, store=store)
    get_run_logger().info("%s: complete %.4f, AUC %.4f", run_dir, res.summary()["complete_accuracy"], res.auc)
    return {"run_dir": run_dir, "markdown": markdown_table(res, f"{run_dir} ({cfg.split})"),
            "files": {k: str(v) for k, v in paths.items()}, **res.summary()}


@flow(name="robustness", flow_run_name=run_name("robustness"), log_prints=True)
def robustness(run_dirs: list[str], config: dict | None = None, store: str | None = None) -> list[dict]:
    """Robustness of each run (``config``: RobustnessConfig fields); artifacts: one markdown table per
    run and one table of complete accuracy and AUC across runs."""
    config = config or {}
    results = [robustness_task(r, config, None, store) for r in run_dirs]
    for r in results:
        create_markdown_artifact(r["markdown"] + f"\n\nPNG: `{r['files']['png']}`",
                                 key=_key("robustness", r["run_dir"].split("/")[-1]),
                                 description=f"missing-modality robustness of {r['run_dir']}")
    create_table_artifact(
        [{"run": r["run_dir"], "complete_accuracy": round(r["complete_accuracy"], 4), "auc": round(r["auc"], 4),
          "auc_f1": round(r["auc_f1"], 4)} for r in results],
        key="robustness-summary", description="complete-input accuracy and area under the missing-rate curve",
    )
    return results
