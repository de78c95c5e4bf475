"""Atomic file writes: the one way affectflow puts a file in place.

Every writer (Parquet feature sets, .csd files, checkpoints, run.json, cached payloads, robustness
tables) writes to a hidden temp file in the destination folder and renames it into place, so a crash or
a kill -9 never leaves a file a reader would accept (readers skip names starting with ``.``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temp path beside ``path``; on success fsync it and rename it to ``path``, on any
    failure remove it (the previous ``path``, if any, stays untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())
