"""What a person sees of a run in the Prefect UI: run names, tags, and the pipeline's own log lines.

* Logs: the pure stages log under the ``affectflow`` logger (:mod:`pipeline.logs`); :func:`route_pipeline_logs`
  forwards those records to the logs of the flow or task run they happen in. It is installed when a flow
  module is imported, so it works the same from the CLI, a deployment's worker or a Dask worker, with no
  setting to remember (``PREFECT_LOGGING_EXTRA_LOGGERS=affectflow`` would need to be set in every one).
* Names: flow runs are named from their parameters (``rebuild-mosi-20261130-142501``) through Prefect's
  ``flow_run_name`` callables; task runs through ``task_run_name`` templates where the tasks are defined.
* Tags: ``dataset:<name>`` and ``corpus:<name>`` on the flow run, so MOSI and GRID runs can be filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_LOGGING_LEVEL

from pipeline.logs import ROOT, get_logger

EMBEDDED_CORPUS = "embedded-mosi"


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, for records emitted inside a flow or task run only.

    The same pipeline code also runs outside flows (``affectflow train``); there a record has no run to
    belong to and is left to the other handlers instead of raising Prefect's missing-context warning."""

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        super().emit(record)


def route_pipeline_logs() -> None:
    """Forward ``affectflow.*`` records to the current Prefect run's logs (idempotent)."""
    log = logging.getLogger(ROOT)
    if log.level == logging.NOTSET:
        # Same threshold as Prefect's own run loggers (PREFECT_LOGGING_LEVEL, INFO by default).
        log.setLevel(logging.getLevelName(PREFECT_LOGGING_LEVEL.value()))
    if not any(isinstance(h, APILogHandler) for h in log.handlers):
        log.addHandler(RunLogHandler())


def run_name(flow: str) -> Callable[[], str]:
    """``flow_run_name`` callable: ``<flow>-<dataset>-<UTC timestamp>`` from the run's parameters
    (``<flow>-<UTC timestamp>`` for flows without a dataset parameter)."""

    def name() -> str:
        from prefect.runtime import flow_run

        dataset = flow_run.parameters.get("dataset")
        return "-".join([flow, *([dataset] if dataset else []), f"{datetime.now(UTC):%Y%m%d-%H%M%S}"])

    return name


def corpus_name(corpus: str | None) -> str:
    """The corpus folder's last two path parts (``data/corpus``; a manifest file names its folder)."""
    if corpus is None:
        return EMBEDDED_CORPUS
    p = Path(corpus).resolve()
    folder = p.parent if p.is_file() else p
    return "/".join(folder.parts[-2:])


def tag_run(dataset: str, corpus: str | None) -> list[str]:
    """Add ``dataset:`` and ``corpus:`` tags to the current flow run (kept with any tags it has)."""
    from prefect.client.orchestration import get_client

    ctx = FlowRunContext.get()
    tags = [f"dataset:{dataset}", f"corpus:{corpus_name(corpus)}"]
    if ctx is None or ctx.flow_run is None:
        return tags
    merged = sorted(set(ctx.flow_run.tags) | set(tags))
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=merged)
    except Exception as e:  # tags help a reader of the UI; they must never sink the run
        get_logger("flows").warning("could not tag the flow run %s: %s", ctx.flow_run.name, e)
        return tags
    return merged


def flow_run_info() -> dict[str, str | None]:
    """The current flow run's id, name and UI page (None with a temporary server, which serves no UI)."""
    from prefect.runtime import flow_run

    url = flow_run.ui_url
    # Without PREFECT_UI_URL (a temporary server) Prefect still formats one, from "None".
    return {"id": flow_run.id, "name": flow_run.name, "url": url if url and url.startswith("http") else None}
