"""extract-corpus on real clips through a real Prefect server: transient errors retried with backoff,
permanent ones quarantined without retry, the flow failing only past the error rate, and per-video
caching (unchanged corpus: nothing recomputed; one changed video: only that one)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect_server import BIN, describe, get_server, json_tail, run

GRID = ["bbaf2n", "brbk7n", "lbax4n"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(clips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for i, name in enumerate(GRID):
        shutil.copy(clips_dir / "grid_lipnet" / f"{name}.mpg", root / f"{name}.mpg")
        rows.append({"path": f"{name}.mpg", "transcript": "bin blue at f two now", "score": 1.0 - i,
                     "split": "train"})
    shutil.copy(clips_dir / "grid_lipnet" / "lwbsza.mpg", root / "broken.mpg")
    rows.append({"path": "broken.mpg", "transcript": "place white by z", "score": 1.0, "split": "train"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root.parent / "cfg.json").write_text(json.dumps({"fps": 2.0}))
    return root


def _extract(request, corpus: Path, *extra: str, fn: str | None = "prefect_server:flaky_extract"):
    server = get_server(request.config)
    work = corpus.parent
    env = server.env(AFFECTFLOW_TEST_DIR=str(work), PYTHONPATH=f"{server.env()['PYTHONPATH']}:{Path(__file__).parent}")
    cmd = [str(BIN / "affectflow"), "run", str(corpus), "--extract-only", "--store", str(work / "store"),
           "--dataset", "clips", "--extract-config", str(work / "cfg.json"), "--json", *extra]
    if fn:
        cmd += ["--item-fn", fn]
    res = run(cmd, env, cwd=work, timeout=400)
    summary = json_tail(res.stdout) if res.returncode == 0 else None
    return res, summary


def _attempts(work: Path) -> dict[str, int]:
    return {p.name.split(".")[0]: int(p.read_text()) for p in work.glob("*.attempts")}


def test_retries_quarantine_and_incremental_cache(request: pytest.FixtureRequest, corpus: Path) -> None:
    work = corpus.parent
    # 1. fresh store: every good video fails once (transient) and is retried; "broken" fails for good.
    res, s1 = _extract(request, corpus)
    assert res.returncode == 0, res.stdout[-4000:]
    assert _attempts(work) == {**{g: 2 for g in GRID}, "broken": 1}  # retried once / never retried
    assert (s1["n_items"], s1["n_computed"], s1["n_cached"], s1["n_failed"]) == (4, 4, 0, 1)
    assert s1["failed_items"] == ["broken"]
    # Each video's outcome and quarantine reason: on the terminal and in the extraction run's logs.
    reason = re.compile(r"video broken: quarantined \[-/decode\] .*simulated permanent failure")
    assert reason.search(res.stdout), res.stdout[-3000:]
    logs = [g["message"] for r in describe(request, "--like", "extract-corpus-clips-%") for g in r["logs"]]
    assert [m for m in logs if reason.fullmatch(m)] and "video broken: nothing extracted" in logs, logs
    assert {f"video {g}: extracted, 3 feature columns" for g in GRID} <= set(logs), logs
    q = pd.read_parquet(work / "store" / "clips" / "_quarantine" / "extracted.parquet")
    assert "simulated permanent failure" in " ".join(q[q.item_id == "broken"]["reason"])
    fs = pq.read_table(work / "store" / "clips" / "extracted.parquet")
    assert sorted(set(fs.column("video_id").to_pylist())) == GRID

    # 2. unchanged corpus, the real per-video function: nothing is recomputed, the store is the same.
    res, s2 = _extract(request, corpus, fn=None)
    assert res.returncode == 0, res.stdout[-4000:]
    assert (s2["n_computed"], s2["n_cached"]) == (0, 4), s2
    again = pq.read_table(work / "store" / "clips" / "extracted.parquet")
    assert again.replace_schema_metadata(None).equals(fs.replace_schema_metadata(None))

    # 3. one video's bytes change: exactly that one is recomputed.
    shutil.copy(corpus / "lbax4n.mpg", corpus / "brbk7n.mpg")
    res, s3 = _extract(request, corpus, fn=None)
    assert res.returncode == 0, res.stdout[-4000:]
    assert (s3["n_computed"], s3["n_cached"]) == (1, 3), s3

    # 4. the same failures against a stricter error budget: the flow fails and says how many and why.
    res, _ = _extract(request, corpus, "--max-error-rate", "0.2", fn=None)
    assert res.returncode == 1, res.stdout[-4000:]
    assert "1/4 items failed" in res.stdout and "simulated permanent failure" in res.stdout, res.stdout[-3000:]


def test_the_flow_and_the_cli_are_one_engine(request: pytest.FixtureRequest, corpus: Path, tmp_path: Path) -> None:
    """The same corpus through the Prefect flow and through `affectflow extract`: the same feature sets, the
    same quarantine table, the same summary fields."""
    server = get_server(request.config)
    cfg = tmp_path / "text.json"
    cfg.write_text(json.dumps({"text": [{"name": "glove", "keep_sequence": True}], "audio": [], "video": []}))
    common = ["--dataset", "clips", "--json"]
    flow = run([str(BIN / "affectflow"), "run", str(corpus), "--extract-only", "--store", str(tmp_path / "flow"),
                "--extract-config", str(cfg), *common], server.env(), cwd=tmp_path, timeout=400)
    cli = run([str(BIN / "affectflow"), "extract", str(corpus), "--store", str(tmp_path / "cli"), "--config", str(cfg),
               "--no-progress", *common], server.env(), cwd=tmp_path, timeout=400)
    assert flow.returncode == 0 and cli.returncode == 0, (flow.stdout[-3000:], cli.stdout[-3000:])
    s_flow, s_cli = json_tail(flow.stdout), json_tail(cli.stdout)
    assert set(s_cli) <= set(s_flow) and s_flow["task_runner"] == "threads"
    for k in ("n_items", "n_segments", "items_done", "n_failed", "present_per_column", "reasons"):
        assert s_flow[k] == s_cli[k], k
    for name in ("extracted", "extracted.seq", "_quarantine/extracted"):
        a, b = (pq.read_table(tmp_path / s / "clips" / f"{name}.parquet") for s in ("flow", "cli"))
        assert a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None)), name
