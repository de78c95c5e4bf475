"""Deterministic fault-injection points for crash tests (no sleeps, no races).

``AFFECTFLOW_BLOCK_AT=<point>`` makes the process, when it reaches ``<point>`` (e.g. ``published:ucln-text``
or ``server-up``), write what it knows as JSON to ``AFFECTFLOW_BLOCK_FILE`` (atomically) and then block
until it is killed. A test waits for that file, kills the process with SIGKILL, and checks what the kill
left behind. Unset (always, outside tests), :func:`reached` does nothing.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


def reached(point: str, **info: object) -> None:
    if os.environ.get("AFFECTFLOW_BLOCK_AT") != point:
        return
    target = Path(os.environ["AFFECTFLOW_BLOCK_FILE"])
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"point": point, "pid": os.getpid(), **info}, default=str))
    os.replace(tmp, target)
    threading.Event().wait()  # never set: blocks this thread until the process is killed
