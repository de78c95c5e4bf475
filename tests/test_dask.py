"""The Dask task runner (prefect-dask, 2-worker LocalCluster) against a running Prefect server: the
per-video tasks run on the cluster's workers, results are cached the same way as with threads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect_server import BIN, get_server, json_tail, run

from flows.tasks import OrchestrationConfig, make_task_runner


def test_runner_is_chosen_by_config() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(make_task_runner(OrchestrationConfig()), ThreadPoolTaskRunner)
    dask = make_task_runner(OrchestrationConfig(task_runner="dask", dask_workers=2))
    assert isinstance(dask, DaskTaskRunner)
    assert dask.cluster_kwargs == {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    remote = make_task_runner(OrchestrationConfig(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert remote.address == "tcp://10.0.0.5:8786"


@pytest.mark.slow
def test_extract_on_a_dask_cluster(request: pytest.FixtureRequest, clips_dir: Path, tmp_path: Path) -> None:
    server = get_server(request.config)
    rows = []
    for name in ("bbaf2n", "lbax4n"):
        shutil.copy(clips_dir / "grid_lipnet" / f"{name}.mpg", tmp_path / f"{name}.mpg")
        rows.append({"path": f"{name}.mpg", "transcript": "bin blue at f two now", "split": "train"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "cfg.json").write_text(json.dumps({"fps": 2.0, "video": []}))
    cmd = [str(BIN / "affectflow"), "run", str(tmp_path), "--extract-only", "--store", str(tmp_path / "store"),
           "--dataset", "grid", "--extract-config", str(tmp_path / "cfg.json"), "--task-runner", "dask",
           "--workers", "2", "--json"]
    res = run(cmd, server.env(), cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-4000:]
    s = json_tail(res.stdout)
    assert s["task_runner"] == "dask" and (s["n_computed"], s["n_failed"]) == (2, 0), s
    table = pq.read_table(tmp_path / "store" / "grid" / "extracted.parquet")
    assert sorted(set(table.column("video_id").to_pylist())) == ["bbaf2n", "lbax4n"]
    assert {"text", "audio"} <= set(table.column_names)
    # Same cache whichever runner computed it: a thread-runner re-run recomputes nothing.
    res = run([c if c != "dask" else "threads" for c in cmd], server.env(), cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-4000:]
    s = json_tail(res.stdout)
    assert (s["n_computed"], s["n_cached"]) == (0, 2), s
