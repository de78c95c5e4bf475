"""One logger hierarchy (``affectflow.*``) and progress bars for the pipeline, with no Prefect here.

Stages log with the standard :mod:`logging` module under :data:`ROOT`; whoever runs them decides where
the lines go: ``flows/`` forwards them to the Prefect run's logs (:mod:`flows.ui`), the CLI prints them
on the terminal (:func:`to_terminal`). Progress bars show only after :func:`to_terminal` and only on an
interactive terminal, so workers, tests and CI logs get the log lines without the bars' control characters.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

ROOT = "affectflow"
_bars = {"on": False}  # switched on by to_terminal(): library callers (tune's workers, benches) get none


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it") -> tqdm:
    # disable=None: tqdm turns itself off when stderr is not a TTY (a worker, a test, a CI log).
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=None if _bars["on"] else True,
                dynamic_ncols=True)


class TqdmHandler(logging.Handler):
    """Writes above any open progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)  # stdout stays for --json
        except Exception:
            self.handleError(record)


def to_terminal(on: bool = True, level: int = logging.INFO) -> None:
    """Print the pipeline's log lines on stderr, above the progress bars, and show the bars when stderr
    is a terminal; ``on=False`` undoes it (a quiet command after a chatty one in the same process)."""
    _bars["on"] = on
    log = logging.getLogger(ROOT)
    ours = [h for h in log.handlers if isinstance(h, TqdmHandler)]
    if not on:
        for h in ours:
            log.removeHandler(h)
        log.propagate = True
        return
    log.setLevel(level)
    if not ours:
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    # Our handler prints them; the root logger's console handler (Prefect's, when loaded) must not repeat them.
    log.propagate = False
