"""Typed configs, stable hashes and library versions: what every artefact carries about its origin."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

# Libraries whose version changes what we compute; recorded with every artefact.
TRACKED_LIBRARIES = (
    "affectflow", "torch", "numpy", "pyarrow", "pandas", "scikit-learn", "opensmile", "librosa",
    "opencv-python-headless", "av", "gensim", "dlib-bin", "praat-parselmouth", "prefect",
)


class StageConfig(BaseModel):
    """Base of every typed config: unknown keys are an error, values are immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    what: ClassVar[str] = "config"  # how error messages name this config

    def config_hash(self) -> str:
        return hash_json(self.model_dump(mode="json"))

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Self:
        """The one config-file loader: YAML (JSON is YAML) or TOML by suffix; ``overrides`` that are not
        None win over the file. A missing or invalid file is an :class:`pipeline.errors.InputError`."""
        from pipeline.errors import InputError

        p = Path(path)
        if not p.is_file():
            raise InputError("config file not found", path=p)
        try:
            text = p.read_text(encoding="utf-8")
            if p.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as e:  # noqa: BLE001 - any parse error is one clear line
            kind = "TOML" if p.suffix == ".toml" else "YAML/JSON"
            raise InputError(f"invalid {cls.what}: not a valid {kind} file: {' '.join(str(e).split())}", path=p) from e
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{cls.what} file must hold a mapping of {cls.__name__} fields", path=p)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as e:  # one line: "field: why; field: why"
            why = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())
            raise InputError(f"invalid {cls.what}: {why}", path=p) from e
        except (ValueError, TypeError) as e:
            raise InputError(f"invalid {cls.what}: {' '.join(str(e).split())}", path=p) from e


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
