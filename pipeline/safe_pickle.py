"""A restricted unpickler: numpy arrays and plain containers only, nothing that can run code.

Pickle is a small program: every ``GLOBAL`` opcode imports a callable that ``REDUCE`` then calls. The
legacy feature pickles of this field (ARGF / HFFN / bc-LSTM) only need numpy's array reconstruction,
so :class:`SafeUnpickler` resolves exactly those names from a fixed table and refuses any other
global *before* it is imported or called: a refused pickle executes nothing. The allowed constructors
are bounded too: an array is never allocated beyond :data:`MAX_ARRAY_BYTES`, so a 200-byte pickle
cannot ask ``numpy.ndarray`` for terabytes.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.errors import InputError, UnsafePickleError


def _numpy_core(sub: str) -> Any:
    # numpy 2 moved numpy.core -> numpy._core; pickles written by either name must resolve to the
    # same object without importing the deprecated alias.
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{sub}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Only the latin-1 form pickle itself emits; other codec names could import arbitrary codec modules.
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refused to load pickle: _codecs.encode with codec {encoding!r}")
    return _codecs.encode(text, "latin1")


# A legacy feature pickle holds well under 1 GiB per array; anything above is refused, not allocated.
MAX_ARRAY_BYTES = 4 << 30


def _check_size(shape: Any, dtype: Any) -> None:
    try:
        dims = [int(shape)] if np.isscalar(shape) else [int(d) for d in shape]
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise UnsafePickleError(f"refused to load pickle: array shape {shape!r} / dtype {dtype!r} ({e})") from None
    n = itemsize
    for d in dims:
        n *= max(d, 0)
    if n > MAX_ARRAY_BYTES:
        raise UnsafePickleError(f"refused to load pickle: it asks for a {n / 2**30:.1f} GiB array "
                                f"(shape {tuple(dims)}); the limit is {MAX_ARRAY_BYTES / 2**30:.0f} GiB")


class _Ndarray:
    """What the global ``numpy.ndarray`` resolves to: a size-checked constructor. Passed to
    ``_reconstruct`` (how numpy pickles arrays) it stands for ``numpy.ndarray`` itself."""

    def __call__(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        _check_size(shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)


_NDARRAY = _Ndarray()


def _reconstructor(multiarray: Any) -> Any:
    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise UnsafePickleError(f"refused to load pickle: _reconstruct of {subtype!r}, only numpy.ndarray is allowed")
        _check_size(shape, dtype)
        return multiarray._reconstruct(np.ndarray, shape, dtype)

    return _reconstruct


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_core("multiarray")
    numeric = _numpy_core("numeric")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        # Python-3 pickles (protocol < 3) store bytes as _codecs.encode(str, "latin1"): a pure function.
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = _reconstructor(multiarray)
        table[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        # protocol-5 pickles of arrays
        if hasattr(numeric, "_frombuffer"):
            table[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


_ALLOWED = _allowed()
ALLOWED_GLOBALS = frozenset(f"{m}.{n}" for m, n in _ALLOWED)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` is a lookup in a fixed allow-list (never an import)."""

    def __init__(self, file: IO[bytes], *, origin: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.origin = origin

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load pickle: it references the global {module}.{name}, which is not "
                "allowed (only numpy arrays, dtypes and scalars are); nothing was executed",
                path=self.origin,
            ) from None


def safe_load(path_or_file: str | Path | IO[bytes], *, encoding: str = "latin1") -> Any:
    """Load a pickle of numpy arrays / dicts / lists safely.

    ``encoding="latin1"`` reads Python-2 pickles (their ``str`` bytes are numpy buffers).
    Raises :class:`UnsafePickleError` for any other global, :class:`InputError` for a missing or
    corrupt file.
    """
    if isinstance(path_or_file, str | Path):
        path = Path(path_or_file)
        if not path.is_file():
            raise InputError("pickle file not found", path=path)
        with open(path, "rb") as f:
            return _load(f, str(path), encoding)
    origin = str(getattr(path_or_file, "name", "<stream>"))
    return _load(path_or_file, origin, encoding)


def _load(f: IO[bytes], origin: str, encoding: str) -> Any:
    try:
        return SafeUnpickler(f, origin=origin, encoding=encoding).load()
    except UnsafePickleError as e:
        if e.path is None:
            raise UnsafePickleError(str(e), path=origin) from None
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as e:
        raise InputError(f"not a readable pickle ({type(e).__name__}: {e})", path=origin) from e


def safe_loads(data: bytes, *, encoding: str = "latin1", origin: str = "<bytes>") -> Any:
    return _load(io.BytesIO(data), origin, encoding)
