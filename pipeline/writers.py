"""One writer per dataset folder, and the checks every writer makes before any work.

The lock is a ``flock`` on ``<folder>/.lock`` (released by the kernel even on kill -9), so a second
process writing the same dataset is refused with one line instead of interleaving its files with the
first one's. Holding it, a writer removes the temp files a killed writer left (``.<name>.<random>.tmp``,
see ``pipeline.atomic``) and checks write permission and free space.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import StoreError

# Free space kept beyond what a write needs: a store filled to the last byte breaks every other writer too.
FREE_SPACE_MARGIN = 64 << 20

_HELD: dict[Path, int] = {}  # lock files this process holds -> depth (a writer may call another writer)
_HELD_LOCK = threading.Lock()


@contextmanager
def folder_writer(root: Path, need_bytes: int = 0) -> Iterator[Path]:
    """Exclusive right to write into ``root`` (a dataset folder): refuses a second writer (another
    process) with a clear message, removes stale temp files, checks write permission and ``need_bytes``
    of free space. Re-entrant within a process (the extraction driver calls the feature-set writer)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the dataset folder ({e.strerror})", path=root) from e
    lock = (root / ".lock").resolve()
    with _HELD_LOCK:
        depth = _HELD.get(lock, 0)
        if depth:
            _HELD[lock] = depth + 1
    if depth:
        try:
            check_writable(root, need_bytes)
            yield root
        finally:
            with _HELD_LOCK:
                _HELD[lock] -= 1
        return
    try:
        fh = open(lock, "a+")  # noqa: SIM115 - held for the whole block
    except OSError as e:
        raise StoreError(f"the store is not writable ({e.strerror})", path=root) from e
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            fh.seek(0)
            raise StoreError(f"another process is writing to this dataset ({fh.read().strip() or 'pid unknown'}); "
                             "wait for it to finish", path=root) from e
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        remove_stale_temp_files(root)
        check_writable(root, need_bytes)
        with _HELD_LOCK:
            _HELD[lock] = 1
        try:
            yield root
        finally:
            with _HELD_LOCK:
                del _HELD[lock]


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Temp files (``.<name>.<random>.tmp``) a killed writer left; only called under the writer lock."""
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(root: Path, need_bytes: int = 0) -> None:
    """Refuse before any work when the folder is not writable or has too little free space."""
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError("the store is not writable (permission denied)", path=root)
    free = shutil.disk_usage(root).free
    if free < need_bytes + FREE_SPACE_MARGIN:
        raise StoreError(f"not enough free space: {free / 2**20:.0f} MiB free, this write needs about "
                         f"{(need_bytes + FREE_SPACE_MARGIN) / 2**20:.0f} MiB", path=root)
