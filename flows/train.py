"""``train_model``: a thin Prefect flow over :func:`pipeline.train.train` (and, for UCLN, one run per
modality plus the context feature set). All logic lives in ``pipeline/``; this adds tasks, logging and
a flow result (run directories + best valid metrics). Expected failures are permanent: no retries.
"""

from __future__ import annotations

import json

from prefect import flow, get_run_logger, task

from flows.ui import route_pipeline_logs, run_name
from pipeline.checkpoint import read_run_info

route_pipeline_logs()


@task(name="train-run", task_run_name="train-{config[model]}", retries=0)
def train_task(config: dict, store: str, dataset: str, features: str | dict | None, out_dir: str,
               write_context: str | None = None) -> dict[str, str]:
    from pipeline.context import train_runs
    from pipeline.train import TrainConfig

    # progress=None: the trainer's own `affectflow.train` lines already reach this run's logs.
    runs = train_runs(TrainConfig(**config), store=store, dataset=dataset, features=features, out_dir=out_dir,
                      write_context=write_context, progress=None)
    return {name: str(p) for name, p in runs.items()}


@flow(name="train_model", flow_run_name=run_name("train"), log_prints=True)
def train_model(config: dict, store: str, dataset: str, out_dir: str, features: str | dict | None = None,
                write_context: str | None = None) -> dict:
    """Train ``config`` (TrainConfig fields); returns run dirs and their best valid metrics."""
    runs = train_task(config, store, dataset, features, out_dir, write_context)
    result = {name: {"run_dir": run, **read_run_info(run).best_valid} for name, run in runs.items()}
    get_run_logger().info("trained: %s", json.dumps(result))
    return result

