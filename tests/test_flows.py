"""The rebuild flow end to end on the embedded MOSI features, against a real Prefect server:
it learns (beats the majority class on honest-mosi valid), writes the report and plots, publishes
artifacts, and an unchanged re-run recomputes no stage."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect_server import BIN, Rebuilt, describe, get_server, json_tail, run, shared_rebuild

from pipeline import payload
from pipeline.errors import InputError
from pipeline.extractors.base import MediaItem, TimedFeatures
from pipeline.store import read_meta


@pytest.fixture(scope="module")
def rebuilt(request: pytest.FixtureRequest) -> Rebuilt:
    return shared_rebuild(request.config)


def test_payload_round_trip_without_pickle(tmp_path: Path) -> None:
    item = MediaItem("v1", Path("a.mp4"), pd.DataFrame({"segment_id": ["v1_0"], "start": [0.0], "end": [1.5]}))
    obj = {"item": item, "timed": TimedFeatures(np.zeros((2, 2)), np.ones((2, 3))), "t": (1, "x", None)}
    back = payload.load(payload.save(obj, tmp_path / "p.npz"))
    assert back["item"].item_id == "v1" and back["item"].path == Path("a.mp4")
    pd.testing.assert_frame_equal(back["item"].segments, item.segments)
    assert back["timed"].values.shape == (2, 3) and back["t"] == (1, "x", None)
    # Only allow-listed classes are rebuilt; anything else is refused, never imported and called.
    evil = json.dumps({"format": "affectflow-payload/1", "tree": {"__dc__": "os:system", "v": {"command": "true"}}})
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(evil.encode(), np.uint8))
    with pytest.raises(InputError, match="outside the allow-list"):
        payload.loads(buf.getvalue())
    with pytest.raises(InputError, match="unreadable payload"):
        payload.loads(b"not a zip")
    with pytest.raises(InputError, match="cannot store"):
        payload.dumps({"f": object()})


@pytest.mark.slow
def test_rebuild_learns_and_reports(rebuilt: Rebuilt) -> None:
    first = rebuilt.first
    assert all(s["recomputed"] for s in first["stages"]), first["stages"]
    m = first["metrics"]["argf"]
    assert m["n"] == 240 and m["split"] == "valid"
    assert m["accuracy"] > m["majority_accuracy"] + 0.05, m  # it learns (honest-mosi valid)
    report = rebuilt.root / "runs" / "report"
    text = (report / "report.md").read_text()
    for heading in ("## Dataset", "## Metrics", "## Per-class results", "## Quarantine", "## Feature audit (ucln-context)"):
        assert heading in text
    # the default chain cross-fits its context features; the audit still flags the published text / video
    # inputs' leak, which no cross-fitting downstream can remove
    assert read_meta(rebuilt.root / "store" / "mosi" / "ucln-context.parquet").extra["cross_fit"]["k"] == 5
    assert "leaking: text, video" in text
    for png in ("feature-audit", "argf-confusion", "argf-training", "argf-tsne", "argf-vertex-weights"):
        data = (report / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert png == "feature-audit" or (Path(first["runs"]["argf"]) / "plots" / f"{png}.png").is_file()


@pytest.mark.slow
def test_unchanged_rerun_recomputes_nothing(rebuilt: Rebuilt) -> None:
    assert not any(s["recomputed"] for s in rebuilt.second["stages"]), rebuilt.second["stages"]
    assert rebuilt.second["metrics"] == rebuilt.first["metrics"]
    assert rebuilt.second["runs"] == rebuilt.first["runs"]


@pytest.mark.slow
def test_artifacts_published(rebuilt: Rebuilt, request: pytest.FixtureRequest) -> None:
    server = get_server(request.config)
    code = (
        "import json\n"
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    print(json.dumps({a.key: [a.type, str(a.data)] for a in c.read_artifacts() if a.key}))\n"
    )
    res = run([sys.executable, "-c", code], server.env())
    assert res.returncode == 0, res.stdout
    arts = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("rebuild-report-mosi", "metrics-mosi", "per-class-mosi", "quarantine-mosi", "plot-mosi-argf-t-sne"):
        assert key in arts, sorted(arts)
    # Plots travel inside the artifacts (the UI renders data: URIs); nothing points at this machine's files.
    assert not [k for k, (_, data) in arts.items() if "file://" in data]
    # four plots of the ARGF run and the feature audit
    assert arts["rebuild-report-mosi"][1].count("](data:image/png;base64,") == 5
    assert arts["plot-mosi-argf-t-sne"][0] == "markdown" and "](data:image/png;base64," in arts["plot-mosi-argf-t-sne"][1]
    assert arts["quarantine-mosi"] == ["markdown", "No items quarantined."]


@pytest.mark.slow
def test_rebuild_from_a_raw_corpus(request: pytest.FixtureRequest, mosi_dir: Path, glove_txt: Path,
                                   tmp_path: Path) -> None:
    """`affectflow run CORPUS`: extraction (here MOSI's transcripts through GloVe) feeds the same
    UCLN -> fusion -> evaluation chain; only the modalities the corpus has are trained."""
    server = get_server(request.config)
    cfg = {"text": [{"name": "glove", "config": {"vectors": str(glove_txt)}}], "audio": [], "video": []}
    (tmp_path / "text.json").write_text(json.dumps(cfg))
    cmd = [str(BIN / "affectflow"), "run", str(mosi_dir / "segments.csv"), "--dataset", "mositext",
           "--fusion", "mlp", "--extract-config", "text.json", "--ucln-epochs", "2", "--fusion-epochs", "2",
           "--no-report", "--json"]
    res = run(cmd, server.env(), cwd=tmp_path, timeout=500)
    assert res.returncode == 0, res.stdout[-4000:]
    s = json_tail(res.stdout)
    assert [x["stage"] for x in s["stages"]] == ["extract", "ucln-text", "context", "train-mlp"]
    assert s["flow_run"]["name"].startswith("rebuild-mositext-")
    assert {"dataset:mositext", f"corpus:{mosi_dir.parent.name}/{mosi_dir.name}"} <= set(
        describe(request, s["flow_run"]["id"])[0]["tags"])
    assert s["stages"][0]["recomputed"] == "72/72 videos"  # 62 train + 10 valid videos (test held out)
    assert s["metrics"]["mlp"]["n"] == 240  # the honest-mosi valid split, from the corpus's split column
    for fs in ("extracted", "ucln-context"):
        assert (tmp_path / "store" / "mositext" / f"{fs}.parquet").is_file()


def test_crash_leftovers_are_cleaned_and_one_rebuild_per_store(tmp_path: Path) -> None:
    from flows.rebuild import clean_partials, store_lock
    from flows.tasks import drop_corrupt_records
    from pipeline.errors import StoreError

    store, out = tmp_path / "store", tmp_path / "runs"
    (store / "mosi").mkdir(parents=True)
    (store / "mosi" / "ok.parquet").write_bytes(b"x")
    (store / "mosi" / ".ok.abc.tmp").write_bytes(b"half")  # write_atomic's temp name
    (out / ".tmp-ucln-text-k-123").mkdir(parents=True)  # an unfinished run directory
    (out / "ucln-text" / "k").mkdir(parents=True)
    removed = clean_partials(store, out)
    assert sorted(p.name for p in removed) == [".ok.abc.tmp", ".tmp-ucln-text-k-123"]
    assert (store / "mosi" / "ok.parquet").exists() and (out / "ucln-text" / "k").is_dir()
    records = tmp_path / "records"
    records.mkdir()
    (records / "good").write_text('{"result": "1"}')
    (records / "cut").write_text('{"resu')  # a record cut short by kill -9
    assert [p.name for p in drop_corrupt_records(records)] == ["cut"]
    with store_lock(store), pytest.raises(StoreError, match="another rebuild"), store_lock(store):
        pass
