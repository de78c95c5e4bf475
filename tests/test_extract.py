"""The extraction driver on real data: MOSI transcripts (text only) combined with imported features, and
every kind of shared clip (plus the MOUD video with its utterance timestamps) through ``extract_corpus``:
each item gets features or a precise quarantine reason per modality, and missing is never zeros."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.assemble import quarantine_path
from pipeline.engine import extract_corpus, local_mapper
from pipeline.extract import ExtractConfig, ExtractorSpec, extract_item
from pipeline.store import read_feature_set, read_meta

# one clip of each trap: MPEG-1/mp2, tight crop mp4, no audio stream, no face, face disappearing
CLIPS = ["grid_lipnet/bbaf2n.mpg", "lrs2_deep_avsr/00002.mp4", "mead_dreamtalk/W009_front_sad_level3_001.mp4",
         "pyfeat/no_face.mp4", "pyfeat/face_noface.mov"]


def _text_only(glove_txt) -> ExtractConfig:
    return ExtractConfig(text=[ExtractorSpec(name="glove", config={"vectors": str(glove_txt)}, keep_sequence=True)],
                         audio=[], video=[])


def test_mosi_transcripts_text_only_and_combined_with_imported(mosi_dir, glove_txt, tmp_path):
    from pipeline.data import load_joined
    from pipeline.importers.table import import_embedded_default

    s = extract_corpus(mosi_dir / "segments.csv", store=tmp_path, dataset="mosi", cfg=_text_only(glove_txt))
    assert s.n_segments == 1687 and s.items_done == 72 and s.present_per_column["text"] == 1687
    fs = read_feature_set(tmp_path, "mosi", "extracted")
    assert fs.meta.producer.kind == "extractor" and fs.meta.extra["extractors"]["text"]["extractor"] == "glove"
    assert fs.meta.extra["oov"]["text"]["oov"] < 0.02 * fs.meta.extra["oov"]["text"]["tokens"]
    seq = read_feature_set(tmp_path, "mosi", "extracted.seq")
    assert seq.meta.modalities["text"].kind == "sequence" and seq.features["text"][0].shape[1] == 50
    # the pooled vector is the mean of the kept word sequence
    np.testing.assert_allclose(fs.features["text"][0], seq.features["text"][0].mean(0), rtol=1e-5, atol=1e-6)
    # extracted text + imported (published) openSMILE audio on the same segment ids -> one training set
    import_embedded_default(tmp_path)
    joined = load_joined(tmp_path, "mosi", {"text": "extracted", "audio": "bclstm-raw"})
    assert joined.x["text"].shape == (1687, 50) and joined.x["audio"].shape == (1687, 73)
    assert not joined.missing["text"].any() and not joined.missing["audio"].any()
    assert (joined.segments["split"].value_counts().to_dict()) == {"train": 1447, "valid": 240}


@pytest.fixture(scope="module")
def clip_corpus(clips_dir, tmp_path_factory):
    from conftest import shared_path

    root = tmp_path_factory.mktemp("clips")
    rows = []
    for rel in CLIPS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips_dir / rel, root / rel)
        rows.append({"path": rel, "transcript": "bin blue at f two now" if "grid" in rel else None})
    moud = shared_path("moud")
    shutil.copy(moud / "101_movies.mp4", root / "101_movies.mp4")
    utt = pd.read_csv(moud / "transcriptions" / "101_movies.csv", sep=";")
    for i, r in utt.iterrows():
        rows.append({"path": "101_movies.mp4", "video_id": "moud101", "segment_id": f"moud101_{i}",
                     "start": r["#starttime"], "end": r["#endtime"], "transcript": r["transcription"],
                     "score": float(r["sentimentAnnotations"]), "split": "valid"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_every_clip_kind_gets_features_or_precise_reasons(clip_corpus, tmp_path):
    cfg = ExtractConfig(fps=5.0)
    s = extract_corpus(clip_corpus, store=tmp_path, dataset="clips", cfg=cfg)
    assert s.n_items == len(CLIPS) + 1 and s.n_segments == len(CLIPS) + 5
    fs = read_feature_set(tmp_path, "clips", "extracted")
    q = pd.read_parquet(quarantine_path(tmp_path, "clips", "extracted"))
    assert list(q.columns) == ["item_id", "segment_id", "modality", "stage", "reason"]
    seg = fs.segments
    for m, spec in cfg.specs():
        col = spec.column
        miss = fs.missing[col]
        for i in np.flatnonzero(miss):  # every missing cell is explained, item- or segment-level
            vid, sid = seg["video_id"][i], seg["segment_id"][i]
            hit = q[(q.item_id == vid) & (q.modality == m) & (q.segment_id.isna() | (q.segment_id == sid))]
            assert len(hit) and hit["reason"].str.len().min() > 10, (vid, sid, m)
        # every column is produced for some clip; missing rows are nulls in the file, not zeros that look real
        assert np.isfinite(fs.features[col][~miss]).all() and (~miss).any(), col

    def reasons(vid, m):
        return " | ".join(q[(q.item_id == vid) & (q.modality == m)]["reason"])

    mead = "mead_dreamtalk/W009_front_sad_level3_001"
    assert [m for m, _ in cfg.specs()] == ["text", "audio", "video"]  # the defaults cover every modality
    assert "no audio stream" in reasons(mead, "audio")
    assert "no transcript" in reasons(mead, "text")
    assert "no transcript" in reasons("pyfeat/no_face", "text")
    assert "no face" in reasons("pyfeat/no_face", "video")
    moud = seg["video_id"] == "moud101"
    assert moud.sum() == 5 and (seg.loc[moud, "split"] == "valid").all()
    assert not fs.missing["text"][moud.to_numpy()].any()  # Spanish words are in glove.6B's vocabulary
    assert s.media_seconds > 40 and s.realtime_factor > 0
    meta = read_meta(tmp_path / "clips" / "extracted.parquet")
    assert meta.producer.config["fps"] == 5.0 and meta.source_hash


def test_item_result_survives_the_payload_codec(mosi_dir, glove_txt):
    from pipeline import payload
    from pipeline.corpus import load_corpus

    item = load_corpus(mosi_dir / "segments.csv").items[3]
    r = extract_item(item, _text_only(glove_txt))
    back = payload.loads(payload.dumps(r))
    np.testing.assert_array_equal(back.vectors["text"], r.vectors["text"])
    assert back.segments["segment_id"].tolist() == r.segments["segment_id"].tolist()
    assert len(back.sequences["text"]) == len(r.segments)


def test_word2vec_trained_through_the_driver_is_recorded(tmp_path):
    rows = pd.DataFrame({"video_id": ["a", "a", "b"], "transcript": ["a good movie", "a bad movie", "good acting"],
                         "split": ["train", "train", "valid"], "score": [2.0, -2.0, 1.0]})
    rows.to_csv(tmp_path / "manifest.csv", index=False)
    cfg = ExtractConfig(text=[ExtractorSpec(name="word2vec", config={"train": {"vector_size": 8, "epochs": 2}})],
                        audio=[], video=[])
    extract_corpus(tmp_path, store=tmp_path / "s", dataset="toy", cfg=cfg)
    meta = read_meta(tmp_path / "s" / "toy" / "extracted.parquet")
    used = meta.extra["extractors"]["text"]
    assert used["vectors"].endswith(".txt") and "_models" in used["vectors"] and used["vocabulary"] == 4  # train only
    fs = read_feature_set(tmp_path / "s", "toy", "extracted")
    assert fs.features["text"].shape == (3, 8) and not fs.missing["text"].any()
    assert fs.segments["label_bin"].tolist() == [1, 0, 1]


def test_two_worker_processes_give_the_same_feature_set(mosi_dir, glove_txt, tmp_path):
    seg = pd.read_csv(mosi_dir / "segments.csv")
    seg[seg.video_id.isin(seg.video_id.unique()[:6])].to_csv(tmp_path / "manifest.csv", index=False)
    one = extract_corpus(tmp_path, store=tmp_path / "a", dataset="mosi", cfg=_text_only(glove_txt))
    two = extract_corpus(tmp_path, store=tmp_path / "b", dataset="mosi", cfg=_text_only(glove_txt),
                         mapper=local_mapper(2))
    assert one.n_items == two.n_items == 6 and one.n_segments == two.n_segments > 60
    a, b = (read_feature_set(p, "mosi", "extracted") for p in (tmp_path / "a", tmp_path / "b"))
    assert a.segments["segment_id"].tolist() == b.segments["segment_id"].tolist()
    np.testing.assert_array_equal(a.features["text"], b.features["text"])
    assert a.meta.source_hash == b.meta.source_hash
