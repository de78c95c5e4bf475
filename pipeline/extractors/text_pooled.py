"""Word-vector text features: tokenisation, OOV policy, word timings, and the pooled baseline.

A word-embedding extractor (GloVe, word2vec) returns one *timed word vector per token*: the interval is
the word's time from the corpus (a GRID ``.align`` file) or, when there is none, the documented fallback
of ``pipeline.align.fallback_word_times`` (the segment split in proportion to word length). The driver
then (a) mean-pools the words onto each segment with SDK semantics -> the **pooled baseline** utterance
vector, and (b) keeps the word-level sequence (``text_words``) for the text-CNN and word alignment.

Tokenisation (``tokenize``): lower-case, Unicode letters/digits, English clitics split the way GloVe's
(Stanford tokenizer) vocabulary expects (``don't`` -> ``do n't``, ``it's`` -> ``it 's``); MOSI-style
apostrophe-less forms (``DONT``, ``IM``) are left as written (GloVe has ``dont`` and ``im``). Disfluency
marks of MOUD transcripts are removed: lengthening ``es:te`` -> ``este``, pauses ``//``, cut-off
words ``c-`` (dropped whole).

OOV policy (explicit, recorded in the config): ``skip`` (default: the word contributes nothing),
``zero`` (a zero vector, bc-LSTM's choice), ``random`` (a fixed random vector per word, U(-0.25, 0.25),
seeded by the word's hash: Kim 2014's choice, reproducible), ``mean`` (the vocabulary's mean vector).
A segment whose tokens are all skipped is *missing* text (reason recorded), never a zero vector.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from pipeline.align import fallback_word_times
from pipeline.corpus import clean_transcript
from pipeline.errors import ItemError
from pipeline.extractors.base import Extracted, Extractor, MediaItem, MediaSource, TimedFeatures
from pipeline.provenance import StageConfig

OovPolicy = Literal["skip", "zero", "random", "mean"]
_CLITIC = re.compile(r"(\w)(n't|'s|'re|'ll|'ve|'m|'d)\b")
_DISFLUENCY = re.compile(r"(?<=\w):(?=\w)|:|//|\b[^\W_]+-(?=\s|$)")  # lengthening, pauses, cut-off words
_TOKEN = re.compile(r"n't|'[a-z]+|[^\W_]+(?:[.'][^\W_]+)*")


def tokenize(text: str | None) -> list[str]:
    """Lower-cased word tokens; see the module docstring for the rules."""
    t = unicodedata.normalize("NFC", clean_transcript(text)).lower().replace("\u2019", "'")
    t = _DISFLUENCY.sub("", t)
    t = _CLITIC.sub(r"\1 \2", t)
    return _TOKEN.findall(t)


class WordVectors:
    """A read-only word -> vector table (``index`` dict + ``[V, D]`` matrix, possibly memory-mapped)."""

    def __init__(self, index: dict[str, int], matrix: np.ndarray, source: str, digest: str) -> None:
        self.index, self.matrix, self.source, self.digest = index, matrix, source, digest
        self.dim = int(matrix.shape[1])
        self._mean: np.ndarray | None = None

    def mean(self) -> np.ndarray:
        if self._mean is None:
            self._mean = np.asarray(self.matrix, np.float64).mean(0).astype(np.float32)
        return self._mean

    def lookup(self, tokens: list[str], oov: OovPolicy) -> tuple[np.ndarray, np.ndarray]:
        """Vectors [n, D] of the kept tokens and the boolean 'kept' mask over ``tokens``."""
        idx = [self.index.get(t, -1) for t in tokens]
        kept = np.array([i >= 0 or oov != "skip" for i in idx], bool)
        out = np.zeros((int(kept.sum()), self.dim), np.float32)
        j = 0
        for tok, i in zip(tokens, idx, strict=True):
            if i >= 0:
                out[j] = self.matrix[i]
            elif oov == "skip":
                continue
            elif oov == "random":
                seed = int.from_bytes(hashlib.sha256(tok.encode()).digest()[:8], "little")
                out[j] = np.random.default_rng(seed).uniform(-0.25, 0.25, self.dim)
            elif oov == "mean":
                out[j] = self.mean()
            j += 1
        return out, kept


def existing_file(path: str, what: str) -> str:
    """Config check: a vectors path must exist when the config loads, not when the first item needs it."""
    if not Path(path).expanduser().is_file():
        raise ValueError(f"{what} {path!r} does not exist")
    return path


class WordEmbeddingConfig(StageConfig):
    oov: OovPolicy = Field("skip", description="what an out-of-vocabulary token becomes")
    use_word_timings: bool = Field(True, description="use the corpus's word timings when it has them")


class WordEmbeddingExtractor(Extractor):
    """Base of GloVe/word2vec: one timed vector per token; subclasses say where the vectors come from."""

    modality: ClassVar = "text"
    needs: ClassVar = "text"
    Config: ClassVar[type[StageConfig]] = WordEmbeddingConfig

    def vectors(self) -> WordVectors:  # pragma: no cover - abstract
        raise NotImplementedError

    def provenance(self) -> dict:
        v = self.vectors()
        return {"vectors": v.source, "vectors_sha256": v.digest, "vocabulary": len(v.index), "dim": v.dim}

    def _segment_words(self, item: MediaItem, seg) -> tuple[list[str], np.ndarray]:
        """Tokens of one segment and their [n, 2] times (timing file first, else the fallback)."""
        cfg = self.cfg
        start, end = float(seg.start), float(seg.end)
        if cfg.use_word_timings and item.words is not None and len(item.words):
            w = item.words
            mid = (w["start"].to_numpy() + w["end"].to_numpy()) / 2
            inside = w[(mid >= start) & (mid < end)]
            if len(inside):
                toks, times = [], []
                for word, s, e in inside[["word", "start", "end"]].itertuples(index=False):
                    sub = tokenize(word)  # a timed word may split ("don't" -> do n't): share its time
                    toks += sub
                    times.append(fallback_word_times(sub, float(s), float(e)))
                return toks, np.concatenate(times) if times else np.zeros((0, 2))
        toks = tokenize(seg.transcript)
        return toks, fallback_word_times(toks, start, end)

    def extract(self, item: MediaItem, media: MediaSource | None) -> Extracted:
        vecs = self.vectors()
        notes: dict[str, str] = {}
        stats = {"tokens": 0, "oov": 0}
        all_iv, all_v = [], []
        for seg in item.segments.itertuples(index=False):
            toks, times = self._segment_words(item, seg)
            if not toks:
                notes[seg.segment_id] = "empty transcript (no tokens)"
                continue
            values, kept = vecs.lookup(toks, self.cfg.oov)
            stats["tokens"] += len(toks)
            stats["oov"] += int(sum(t not in vecs.index for t in toks))
            if not kept.any():
                notes[seg.segment_id] = f"all {len(toks)} tokens out of vocabulary (oov={self.cfg.oov})"
                continue
            all_iv.append(times[kept])
            all_v.append(values)
        if not all_iv:
            reasons = sorted(set(notes.values()))
            raise ItemError(f"no text features: {'; '.join(reasons) or 'no segments'}", item=item.item_id,
                            stage=self.name, modality="text")
        return Extracted(TimedFeatures(np.concatenate(all_iv), np.concatenate(all_v), None), notes, stats)
