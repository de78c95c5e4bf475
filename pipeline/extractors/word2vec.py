"""word2vec through gensim: load vectors in word2vec format, or train them on the corpus transcripts.

* ``vectors`` given: a word2vec-format file (``.bin`` = binary, anything else = text with a header line),
  read with ``KeyedVectors.load_word2vec_format``. gensim's native ``.kv``/``.model`` files are *refused*:
  they are pickles, and a feature file must not be able to run code.
* ``vectors`` None: ``prepare(corpus, workdir)`` (called by the driver before extraction) trains a
  skip-gram model on the transcripts of the ``train_splits`` only (no text of a valid/test video shapes
  the embedding), single worker + fixed seed so the vectors are reproducible, saves them as a word2vec
  text file under ``workdir`` named by the training config + corpus hash, and returns an extractor whose
  config points at that file — so the config stored with the features names the exact vectors used.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator

from pipeline.atomic import atomic_path
from pipeline.errors import InputError
from pipeline.extractors.registry import register_extractor
from pipeline.extractors.text_pooled import (
    WordEmbeddingConfig,
    WordEmbeddingExtractor,
    WordVectors,
    existing_file,
    tokenize,
)
from pipeline.provenance import StageConfig, hash_file, hash_json


class Word2VecTrain(StageConfig):
    vector_size: int = 100
    window: int = 5
    min_count: int = 1
    epochs: int = 30
    sg: int = Field(1, description="1 = skip-gram (better for small corpora), 0 = CBOW")
    seed: int = 0


class Word2VecConfig(WordEmbeddingConfig):
    vectors: str | None = Field(None, description="word2vec-format file; None = train on the corpus")
    binary: bool | None = Field(None, description="None = binary iff the file ends in .bin")
    train: Word2VecTrain = Word2VecTrain()
    train_splits: list[str] = ["train"]

    @field_validator("vectors")
    @classmethod
    def _exists(cls, v: str | None) -> str | None:
        return None if v is None else existing_file(v, "word2vec vectors file")


@functools.lru_cache(maxsize=4)
def _load(path: str, binary: bool, size: int, mtime: float) -> WordVectors:  # noqa: ARG001 (cache key)
    from gensim.models import KeyedVectors

    try:
        kv = KeyedVectors.load_word2vec_format(path, binary=binary)
    except (ValueError, UnicodeDecodeError, IndexError, EOFError) as e:
        raise InputError(f"not a word2vec-format file ({type(e).__name__}: {e})", path=path) from e
    return WordVectors(dict(kv.key_to_index), kv.vectors, path, hash_file(path)[:16])


def load_word2vec(vectors: str, binary: bool | None = None) -> WordVectors:
    p = Path(vectors).expanduser()
    if p.suffix in (".kv", ".model", ".pkl", ".pickle"):
        raise InputError("gensim native files are pickles and are refused; save with save_word2vec_format", path=p)
    if not p.is_file():
        raise InputError("word2vec vectors file not found", path=p)
    st = p.stat()
    return _load(str(p.resolve()), p.suffix == ".bin" if binary is None else binary, st.st_size, st.st_mtime)


def train_word2vec(sentences: list[list[str]], cfg: Word2VecTrain, out: Path) -> Path:
    """Train skip-gram/CBOW deterministically (1 worker, fixed seed) and save in word2vec text format."""
    from gensim.models import Word2Vec

    sentences = [s for s in sentences if s]
    if not sentences:
        raise InputError("no transcript to train word2vec on (the training splits have no text)")
    model = Word2Vec(sentences, vector_size=cfg.vector_size, window=cfg.window, min_count=cfg.min_count,
                     epochs=cfg.epochs, sg=cfg.sg, seed=cfg.seed, workers=1)
    with atomic_path(out) as tmp:
        model.wv.save_word2vec_format(str(tmp), binary=False)
    return out


@register_extractor("word2vec")
class Word2VecExtractor(WordEmbeddingExtractor):
    """One word2vec vector per token; vectors loaded, or trained on the corpus by ``prepare``."""

    Config = Word2VecConfig

    def prepare(self, corpus, workdir: Path) -> Word2VecExtractor:
        """Train on the corpus when no vectors are given; returns an extractor with a concrete config."""
        if self.cfg.vectors is not None:
            return self
        seg = corpus.segments[corpus.segments["split"].isin(self.cfg.train_splits)]
        sentences = [tokenize(t) for t in seg["transcript"]]
        key = hash_json({"train": self.cfg.train.model_dump(), "text": sentences})
        out = Path(workdir) / f"word2vec-{key}.txt"
        if not out.is_file():
            train_word2vec(sentences, self.cfg.train, out)
        return type(self)(self.cfg.model_copy(update={"vectors": str(out)}))

    def vectors(self) -> WordVectors:
        if self.cfg.vectors is None:
            raise InputError("word2vec has no vectors: give `vectors`, or run through the driver, which trains them")
        return load_word2vec(self.cfg.vectors, self.cfg.binary)
