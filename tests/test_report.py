"""Pure report helpers: what a person reads in report.md and in the Prefect UI's artifacts."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from pipeline.report import (
    NO_QUARANTINE,
    _md_table,
    data_uri,
    dataset_rows,
    metrics_rows,
    per_class_rows,
    plot_confusion,
    render_markdown,
    stage_rows,
)

RESULTS = {"argf": {"split": "valid", "n": 240, "accuracy": 0.8004112808460635, "f1_weighted": 0.8017,
                    "f1_macro": 0.78, "majority_accuracy": 0.6208333333333333, "best_epoch": 7, "mae": None,
                    "per_class_accuracy": {"negative": 0.6153846153846154, "positive": 0.8657718120805369},
                    "class_counts": {"negative": 91, "positive": 149}}}


def test_per_class_rows_keep_undefined_accuracy():
    rows = per_class_rows({"argf": {"per_class_accuracy": {"neg": 0.5, "pos": None}}}, ["neg", "pos"])
    assert rows == [
        {"model": "argf", "class": "neg", "n": None, "accuracy (%)": 50.0},
        {"model": "argf", "class": "pos", "n": None, "accuracy (%)": None},
    ]
    table = _md_table(rows)
    assert "| argf | pos | n/a | n/a |" in table and "| argf | neg | n/a | 50.00 |" in table


def test_metrics_are_rounded_percentages_with_class_names():
    (row,) = metrics_rows(RESULTS)
    assert row == {"model": "argf", "split": "valid", "n": 240, "accuracy (%)": 80.04, "weighted F1 (%)": 80.17,
                   "macro F1 (%)": 78.0, "majority class (%)": 62.08, "best epoch": 7}
    text = render_markdown(title="t", dataset_rows=[], results=RESULTS, class_names=["negative", "positive"],
                           quarantine=None)
    assert "| argf | valid | 240 | 80.04 | 80.17 | 78.00 | 62.08 | 7 |" in text
    assert "| argf | negative | 91 | 61.54 |" in text and "| argf | positive | 149 | 86.58 |" in text
    assert "0.8004112808460635" not in text


def test_stage_table_columns_are_the_union_over_rows():
    # GRID's first stage (extraction) once had no "seconds": the table then dropped the column for all.
    stages = [{"stage": "extract", "what": "data/corpus", "recomputed": "11/11 videos"},
              {"stage": "ucln-text", "what": "/abs/runs/ucln-text/ab12", "recomputed": False, "seconds": 0.08}]
    table = _md_table(stage_rows(stages))
    assert table.splitlines()[0] == "| stage | what | recomputed | seconds |"
    assert "| extract | data/corpus | 11/11 videos |  |" in table
    assert "| ucln-text | ucln-text/ab12 | no (from cache) | 0.08 |" in table


def test_dataset_table_is_text_not_json():
    store_row = {"dataset": "mosi", "feature_set": "bclstm-raw", "rows": 1687, "producer": "importer:table",
                 "modalities": {"text": "vector[100]", "audio": "vector[73]"}, "source_hash": "0d1561d62044",
                 "splits": {"train": {"rows": 1447, "positive": 709}, "valid": {"rows": 240, "positive": 149}},
                 "path": "/abs/store/mosi/bclstm-raw.parquet"}
    (row,) = dataset_rows([store_row])
    assert row == {"feature set": "bclstm-raw", "rows": 1687, "modalities": "text vector[100], audio vector[73]",
                   "splits": "train: 1447 rows, 709 positive; valid: 240 rows, 149 positive",
                   "producer": "importer:table", "source hash": "0d1561d62044"}
    table = _md_table([row])
    assert "{" not in table and "/abs/" not in table


def test_empty_quarantine_reads_as_such_and_a_full_one_lists_reasons():
    empty = render_markdown(title="t", dataset_rows=[], results={}, class_names=[], quarantine=pd.DataFrame())
    assert f"## Quarantine (0 records)\n\n{NO_QUARANTINE}" in empty and "| items |" not in empty
    q = pd.DataFrame([{"item_id": "v1", "stage": "decode", "modality": None, "reason": "no audio stream"}] * 2)
    full = render_markdown(title="t", dataset_rows=[], results={}, class_names=[], quarantine=q)
    assert "| decode | - | no audio stream | 2 |" in full and NO_QUARANTINE not in full


def test_plots_are_files_on_disk_and_inline_images_for_the_ui(tmp_path: Path):
    png = plot_confusion([[5, 1], [2, 7]], ["negative", "positive"], tmp_path / "argf-confusion.png")
    kw = dict(title="t", dataset_rows=[], results={}, class_names=[], quarantine=None, plots={"argf confusion": png})
    assert "![argf confusion](argf-confusion.png)" in render_markdown(**kw)
    inline = render_markdown(**kw, image_src=data_uri)
    src = inline.split("![argf confusion](", 1)[1].split(")", 1)[0]
    assert src.startswith("data:image/png;base64,") and "file:" not in inline
    assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()
