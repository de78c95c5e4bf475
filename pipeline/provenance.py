"""Typed configs, stable hashes and library versions: what every artefact carries about its origin."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# Libraries whose version changes what we compute; recorded with every artefact.
TRACKED_LIBRARIES = (
    "affectflow", "torch", "numpy", "pyarrow", "pandas", "scikit-learn", "opensmile", "librosa",
    "opencv-python-headless", "av", "gensim", "dlib-bin", "praat-parselmouth", "prefect",
)


class StageConfig(BaseModel):
    """Base of every typed config: unknown keys are an error, values are immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    def config_hash(self) -> str:
        return hash_json(self.model_dump(mode="json"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_json(obj: Any) -> str:
    """Short, stable content hash of a JSON-able object (key order does not matter)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: Iterable[str | Path]) -> str:
    """One digest for several files: the digest of their (name, digest) list."""
    return hash_json(sorted((Path(p).name, hash_file(p)) for p in paths))


def library_versions(names: Iterable[str] = TRACKED_LIBRARIES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
