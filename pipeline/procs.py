"""Child processes that die with their parent.

A ``kill -9`` of a command gives it no chance to stop what it started, and a pool worker blocked on its
task queue never sees the parent go (every worker holds a write end of that queue, so it never reads
EOF). On Linux the child asks the kernel to send it SIGKILL when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Call first thing in a child process (a pool ``initializer``): it is killed when ``parent`` dies."""
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)
