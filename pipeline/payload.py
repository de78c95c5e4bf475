"""A safe on-disk codec for per-item results (the incremental extraction cache), without pickle.

Prefect's default result serializer is cloudpickle: loading a cached result would execute whatever a
tampered cache file says. Our cache therefore stores each item's result as one ``.npz`` file
(``allow_pickle=False``) holding the arrays plus a JSON description of the structure. Dataclasses and
pydantic models are rebuilt only when their class lives in an allow-listed package (``pipeline.``,
``models.`` by default); anything else is refused. Writes are atomic (temp name + rename).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from pipeline.atomic import write_bytes_atomic
from pipeline.errors import InputError

ALLOWED_PREFIXES = ("pipeline.", "models.")
_FORMAT = "affectflow-payload/1"


def _class_of(qualname: str) -> type:
    module, _, name = qualname.rpartition(":")
    if not module.startswith(ALLOWED_PREFIXES):
        raise InputError(f"payload refers to class {qualname!r} outside the allow-list {ALLOWED_PREFIXES}")
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type):
        raise InputError(f"payload refers to unknown class {qualname!r}")
    return cls


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    def put(a: np.ndarray) -> str:
        key = f"a{len(arrays)}"
        arrays[key] = a
        return key

    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise InputError("object arrays cannot be stored safely in a payload")
        return {"__nd__": put(obj)}
    if isinstance(obj, pd.DataFrame):
        sink = pa.BufferOutputStream()
        table = pa.Table.from_pandas(obj, preserve_index=False)
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return {"__df__": put(np.frombuffer(sink.getvalue().to_pybytes(), np.uint8))}
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    if isinstance(obj, BaseModel):
        cls = type(obj)
        return {"__model__": f"{cls.__module__}:{cls.__qualname__}", "v": _encode(obj.model_dump(), arrays)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj) if f.init}
        return {"__dc__": f"{cls.__module__}:{cls.__qualname__}", "v": fields}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, arrays) for k, v in obj.items()}}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_encode(v, arrays) for v in obj]}
    raise InputError(f"cannot store a {type(obj).__name__} in a payload")


def _decode(node: Any, arrays: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if "__nd__" in node:
        return arrays[node["__nd__"]]
    if "__df__" in node:
        reader = pa.ipc.open_stream(pa.BufferReader(arrays[node["__df__"]].tobytes()))
        return reader.read_all().to_pandas()
    if "__path__" in node:
        return Path(node["__path__"])
    if "__model__" in node:
        return _class_of(node["__model__"]).model_validate(_decode(node["v"], arrays))
    if "__dc__" in node:
        cls = _class_of(node["__dc__"])
        return cls(**{k: _decode(v, arrays) for k, v in node["v"].items()})
    if "__dict__" in node:
        return {k: _decode(v, arrays) for k, v in node["__dict__"].items()}
    if "__items__" in node:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["__items__"]}
    if "__list__" in node:
        return [_decode(v, arrays) for v in node["__list__"]]
    if "__tuple__" in node:
        return tuple(_decode(v, arrays) for v in node["__tuple__"])
    raise InputError(f"unknown payload node {sorted(node)[:3]}")


def dumps(obj: Any) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays)
    buf = io.BytesIO()
    header = json.dumps({"format": _FORMAT, "tree": tree}).encode()
    np.savez(buf, __header__=np.frombuffer(header, np.uint8), **arrays)
    return buf.getvalue()


def loads(blob: bytes) -> Any:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            header = json.loads(z["__header__"].tobytes().decode())
            if header.get("format") != _FORMAT:
                raise InputError(f"not an affectflow payload (format {header.get('format')!r})")
            arrays = {k: z[k] for k in z.files if k != "__header__"}
    except (ValueError, OSError, KeyError, json.JSONDecodeError, zipfile.BadZipFile) as e:
        raise InputError(f"unreadable payload: {e}") from e
    return _decode(header["tree"], arrays)


def save(obj: Any, path: str | Path) -> Path:
    """Write atomically: a reader (or a run killed with -9) never sees half a payload."""
    path = Path(path)
    write_bytes_atomic(path, dumps(obj))
    return path


def load(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError("payload file not found", path=path)
    return loads(path.read_bytes())
