"""Text-CNN on real MOSI word sequences (GloVe from the transcripts): it learns, and its features are stored."""

from __future__ import annotations

import numpy as np
import torch

from models.textcnn import TextCNN, pad_sequences
from pipeline.checkpoint import read_run_info
from pipeline.engine import extract_corpus
from pipeline.extract import ExtractConfig, ExtractorSpec
from pipeline.store import read_feature_set
from pipeline.text_cnn import TextCNNConfig, train_text_cnn


def test_padding_never_changes_the_features():
    torch.manual_seed(0)
    m = TextCNN(8, 2, filters=4, hidden=6).eval()
    a, b = torch.randn(2, 8), torch.randn(9, 8)
    x1, l1 = pad_sequences([a], 50)
    x2, l2 = pad_sequences([a, b], 50)  # a padded to 9 steps
    torch.testing.assert_close(m.features(x1, l1)[0], m.features(x2, l2)[0])


def test_text_cnn_learns_on_mosi_train_and_writes_features(mosi_dir, glove_txt, tmp_path):
    cfg = ExtractConfig(text=[ExtractorSpec(name="glove", config={"vectors": str(glove_txt)}, keep_sequence=True)],
                        audio=[], video=[])
    extract_corpus(mosi_dir / "segments.csv", store=tmp_path, dataset="mosi", cfg=cfg)
    res = train_text_cnn(TextCNNConfig(epochs=4, lr=3e-3), store=tmp_path, dataset="mosi",
                         words_feature_set="extracted.seq", out_feature_set="textcnn")
    assert res["n_train"] == 1447 and res["n_valid"] == 240
    assert res["train_accuracy"] > 0.75  # it fits its training labels...
    assert res["valid_accuracy"] > 149 / 240  # ...and beats the valid majority class (62.1% positive)
    fs = read_feature_set(tmp_path, "mosi", "textcnn")
    assert fs.features["text"].shape == (1687, 100) and not fs.missing["text"].any()
    assert fs.meta.producer.kind == "model" and fs.meta.lineage[0].startswith("mosi/extracted.seq@")
    assert np.isfinite(fs.features["text"]).all() and fs.features["text"].std() > 0
    # The one trainer's run format: the features are the saved best-epoch model's, reproducibly.
    info = read_run_info(res["run"])
    assert info.model == "textcnn" and info.best_epoch == res["best_epoch"] and info.epochs_run == 4
    assert fs.meta.producer.config["checkpoint_sha256"] == info.checkpoint_sha256
