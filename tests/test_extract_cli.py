"""``affectflow extract`` on the embedded GRID corpus (raw video -> features) and its error handling."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from affectflow.cli import main
from pipeline.store import read_feature_set

ROOT = Path(__file__).resolve().parents[1]


def test_extract_embedded_corpus(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"fps": 5.0, "word_level": True}))
    rc = main(["extract", str(ROOT / "data" / "corpus"), "--dataset", "grid", "--store", str(tmp_path),
               "--config", str(cfg), "--no-progress", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_items"] == 11 and out["items_done"] == 11 and out["media_seconds"] > 30
    fs = read_feature_set(tmp_path, "grid", "extracted")
    assert fs.meta.label_names == ["bin", "lay", "place", "set"]
    assert fs.segments["split"].value_counts().to_dict() == {"train": 8, "valid": 3}
    assert not fs.missing["text"].any()
    # the clip with a word-timing file used it: its words sit at the .align times, not the fallback
    seq = read_feature_set(tmp_path, "grid", "extracted.seq")
    assert seq.features["text"][2].shape == (6, 50)
    for col in ("audio_words", "video_words"):  # word-level: one audio/visual vector per word, in order
        assert seq.features[col][2].shape[0] == 6, col
        assert sum(s is not None for s in seq.features[col]) >= 10, col
    for m in ("audio", "video"):  # every shipped clip has speech and a face
        assert not fs.missing[m].any(), m
    q = pd.read_parquet(tmp_path / "grid" / "_quarantine" / "extracted.parquet")
    assert len(q) == 0


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    pd.DataFrame({"path": ["../x.mp4"], "transcript": ["hi"]}).to_csv(tmp_path / "c" / "manifest.csv", index=False)
    rc = main(["extract", str(tmp_path / "c"), "--dataset", "d", "--store", str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "escapes the corpus folder" in err and len(err.splitlines()) == 1
    (tmp_path / "bad.json").write_text('{"fps": "fast"}')
    rc = main(["extract", str(ROOT / "data" / "corpus"), "--dataset", "d", "--store", str(tmp_path / "s"),
               "--config", str(tmp_path / "bad.json")])
    assert rc == 2 and "invalid extraction config" in capsys.readouterr().err
