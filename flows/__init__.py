"""Prefect flows over the pure stage functions in ``pipeline/``.

Kept light on purpose: importing ``flows`` does not import Prefect, torch or any stage, so the CLI and
tests can set Prefect's environment (``PREFECT_HOME`` and friends) *before* Prefect reads its settings.
Flows live in their modules: ``flows.rebuild`` (the whole pipeline), ``flows.extract_corpus``
(per-video extraction, cached and mapped), ``flows.report`` (artifacts); task wrappers in ``flows.tasks``.
"""

from __future__ import annotations

import os
from pathlib import Path

# Settings measured on this offline machine (see ../shared/DEPENDENCIES.md): ephemeral start-up takes
# 10-13 s (default timeout 20 s), analytics would try the network (the server's, and the client's, which
# DO_NOT_TRACK turns off along with its notice on every terminal run).
OFFLINE_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_UI_ENABLED": "false",
}
# The CLI prints the pipeline's own progress (pipeline.logs.to_terminal); Prefect's console handler then
# only adds a "Finished in state ..." line per task, so on the terminal it shows warnings and errors.
# Only the console: every INFO line still reaches the run's logs on the server.
CLI_CONSOLE_DEFAULTS: dict[str, str] = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}


def prefect_env(home: str | Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a self-contained Prefect: its own PREFECT_HOME, offline defaults, optional server."""
    env = dict(OFFLINE_DEFAULTS)
    env["PREFECT_HOME"] = str(Path(home).resolve())
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def configure_prefect(home: str | Path, *, override: bool = False) -> Path:
    """Point this process at a private PREFECT_HOME unless the user already chose one.

    Must run before the first ``import prefect`` (Prefect reads its settings at import time).
    With no ``PREFECT_API_URL`` Prefect starts a temporary (ephemeral) server on first use.
    """
    chosen = None if override else os.environ.get("PREFECT_HOME")
    home = Path(chosen) if chosen else Path(home)
    home.mkdir(parents=True, exist_ok=True)
    for key, value in {**prefect_env(home), **CLI_CONSOLE_DEFAULTS}.items():
        if override or key not in os.environ:
            os.environ[key] = value
    return home
