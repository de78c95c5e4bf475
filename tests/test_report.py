"""Pure report helpers: a class absent from the evaluated split is 'n/a', not a crash or a fake 0."""

from pipeline.report import _md_table, per_class_rows


def test_per_class_rows_keep_undefined_accuracy():
    rows = per_class_rows({"argf": {"per_class_accuracy": {"neg": 0.5, "pos": None}}}, ["neg", "pos"])
    assert rows == [
        {"run": "argf", "class": "neg", "accuracy": 0.5},
        {"run": "argf", "class": "pos", "accuracy": None},
    ]
    table = _md_table(rows)
    assert "| argf | pos | n/a |" in table and "| argf | neg | 0.5000 |" in table
