"""The import_dataset Prefect flow under Prefect's test harness (temporary database, ephemeral server)."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError

# Offline settings from ../shared/DEPENDENCIES.md; must be in place before Prefect reads them.



@pytest.mark.slow
def test_flow_imports_pickle_and_default(prefect_harness, tmp_path, mosi_pickle, mosi_dir):
    from flows.import_dataset import import_dataset

    store = tmp_path / "store"
    rows = import_dataset(kind="pickle", path=str(mosi_pickle), store=str(store), dataset="mosi",
                          segments=str(mosi_dir / "segments.csv"))
    (row,) = rows
    assert row["feature_set"] == "bclstm-context"
    assert {s: (e["rows"], e["positive"]) for s, e in row["splits"].items()} == {"train": (1447, 709), "valid": (240, 149)}
    (row,) = import_dataset(kind="default", store=str(store))
    assert row["feature_set"] == "bclstm-raw" and row["modalities"]["audio"] == "vector[73]"
    (row,) = import_dataset(kind="csd", path=[str(mosi_dir / "CMU_MOSI_Opinion_Labels.csd")], store=str(store),
                            segments=str(mosi_dir / "segments.csv"), default_split="test")
    assert row["rows"] == 2199 and row["splits"]["test"]["rows"] == 512
    assert sorted(p.name for p in (store / "mosi").glob("*.parquet")) == [
        "bclstm-context.parquet", "bclstm-raw.parquet", "csd.parquet"
    ]


@pytest.mark.slow
def test_flow_fails_cleanly_on_bad_input(prefect_harness, tmp_path, mosi_dir):
    from flows.import_dataset import import_dataset

    with pytest.raises(InputError, match="features file not found"):
        import_dataset(kind="table", segments=str(mosi_dir / "segments.csv"), features=[str(tmp_path / "x.npz")],
                       store=str(tmp_path / "store"), dataset="mosi")
    assert not (tmp_path / "store").exists()
    state = import_dataset(kind="table", segments=str(mosi_dir / "segments.csv"),
                           features=[str(tmp_path / "x.npz")], store=str(tmp_path / "store"), return_state=True)
    assert state.is_failed()
