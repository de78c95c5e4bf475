"""Dask (prefect-dask) against a running Prefect server: the per-video tasks run on a 2-worker LocalCluster
(``--task-runner dask``) or on a cluster that already exists (``--dask-address``: a ``dask scheduler`` and
two ``dask worker`` processes started here), with the same results and cache as the thread runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect_server import BIN, free_port, get_server, json_tail, run, stop

from flows.tasks import OrchestrationConfig, make_task_runner

CLIPS = ("bbaf2n", "lbax4n")


def test_runner_is_chosen_by_config() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(make_task_runner(OrchestrationConfig()), ThreadPoolTaskRunner)
    dask = make_task_runner(OrchestrationConfig(task_runner="dask", dask_workers=2))
    assert isinstance(dask, DaskTaskRunner)
    assert dask.cluster_kwargs == {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    remote = make_task_runner(OrchestrationConfig(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert remote.address == "tcp://10.0.0.5:8786"
    # An address alone selects Dask (deployment parameter orchestration={"dask_address": ...}).
    assert make_task_runner(OrchestrationConfig(dask_address="tcp://10.0.0.5:8786")).address == "tcp://10.0.0.5:8786"
    for bad in ({"dask_address": "10.0.0.5:8786"}, {"dask_address": "tcp://10.0.0.5"},
                {"dask_address": "tcp://10.0.0.5:port"}, {"task_runner": "threads", "dask_address": "tcp://h:8786"}):
        with pytest.raises(ValueError, match="Dask scheduler address|needs task_runner"):
            OrchestrationConfig(**bad)


@pytest.mark.parametrize("address, message", [
    ("10.0.0.5:8786", "is not a Dask scheduler address such as tcp://HOST:8786"),
    ("tcp://127.0.0.1:{port}", "no Dask scheduler reachable at tcp://127.0.0.1:"),
])
def test_bad_dask_address_is_one_line(address: str, message: str, tmp_path: Path) -> None:
    """Refused before any flow starts: exit 2, one line, no traceback (nothing listens on the free port)."""
    cmd = [str(BIN / "affectflow"), "run", str(tmp_path), "--extract-only", "--store", str(tmp_path / "store"),
           "--dask-address", address.format(port=free_port())]
    res = run(cmd, {**os.environ, "PREFECT_HOME": str(tmp_path / "home")}, cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stdout
    assert res.stdout.strip().count("\n") == 0 and message in res.stdout and "Traceback" not in res.stdout, res.stdout
    assert not (tmp_path / "store").exists()


def _corpus(clips_dir: Path, root: Path) -> tuple[Path, Path]:
    """Two real GRID clips as a corpus, and a quick extraction config (text + audio, fps 2)."""
    corpus = root / "corpus"
    corpus.mkdir()
    rows = []
    for name in CLIPS:
        shutil.copy(clips_dir / "grid_lipnet" / f"{name}.mpg", corpus / f"{name}.mpg")
        rows.append({"path": f"{name}.mpg", "transcript": "bin blue at f two now", "split": "train"})
    pd.DataFrame(rows).to_csv(corpus / "manifest.csv", index=False)
    (root / "cfg.json").write_text(json.dumps({"fps": 2.0, "video": []}))
    return corpus, root / "cfg.json"


def _extract_cmd(corpus: Path, store: Path, cfg: Path, *runner: str) -> list[str]:
    return [str(BIN / "affectflow"), "run", str(corpus), "--extract-only", "--store", str(store), "--dataset", "grid",
            "--extract-config", str(cfg), *runner, "--json"]


@pytest.fixture
def dask_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A real `dask scheduler` and two single-threaded `dask worker` processes (no nanny: the worker is the
    process we started) on 127.0.0.1, talking to the session's Prefect server; all stopped by their ids."""
    env = get_server(request.config).env()
    address = f"tcp://127.0.0.1:{free_port()}"
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "w") as fh:
            procs.append(subprocess.Popen([str(BIN / "dask"), *args, "--no-dashboard"], env=env, stdout=fh,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        return procs[-1]

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1])
        workers = [start(f"worker{i}", "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                         "--name", f"w{i}") for i in range(2)]
        yield address, workers
    finally:
        for p in reversed(procs):
            stop(p)


@pytest.mark.slow
def test_extract_on_an_existing_dask_cluster(dask_cluster: tuple[str, list[subprocess.Popen]], clips_dir: Path,
                                             tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from distributed import Client

    address, workers = dask_cluster
    server = get_server(request.config)
    corpus, cfg = _corpus(clips_dir, tmp_path)
    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)  # bounded: raises TimeoutError after 2 min
        # The cluster's workers are exactly the two processes started here, fresh (nothing executed yet).
        assert sorted(client.run(os.getpid).values()) == sorted(w.pid for w in workers)
        assert set(client.run(lambda dask_worker: dask_worker.state.executed_count).values()) == {0}

        res = run(_extract_cmd(corpus, tmp_path / "store-dask", cfg, "--dask-address", address), server.env(),
                  cwd=tmp_path, timeout=400)
        assert res.returncode == 0, res.stdout[-4000:]
        s = json_tail(res.stdout)
        assert s["task_runner"] == "dask" and (s["n_computed"], s["n_failed"]) == (2, 0), s
        # Each video's task ran once, on those workers (none in the CLI's own process).
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sum(executed.values()) == len(CLIPS), executed

    # The cluster computed what the thread runner computes.
    res = run(_extract_cmd(corpus, tmp_path / "store-threads", cfg, "--task-runner", "threads"), server.env(),
              cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-4000:]
    assert json_tail(res.stdout)["n_computed"] == 2
    frames = [pq.read_table(tmp_path / d / "grid" / "extracted.parquet").to_pandas()
              .sort_values(["video_id", "segment_id"]).reset_index(drop=True) for d in ("store-dask", "store-threads")]
    assert sorted(frames[0]["video_id"].unique()) == sorted(CLIPS) and {"text", "audio"} <= set(frames[0].columns)
    pd.testing.assert_frame_equal(frames[0], frames[1])


@pytest.mark.slow
def test_extract_on_a_local_dask_cluster(request: pytest.FixtureRequest, clips_dir: Path, tmp_path: Path) -> None:
    server = get_server(request.config)
    corpus, cfg = _corpus(clips_dir, tmp_path)
    cmd = _extract_cmd(corpus, tmp_path / "store", cfg, "--task-runner", "dask", "--workers", "2")
    res = run(cmd, server.env(), cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-4000:]
    s = json_tail(res.stdout)
    assert s["task_runner"] == "dask" and (s["n_computed"], s["n_failed"]) == (2, 0), s
    table = pq.read_table(tmp_path / "store" / "grid" / "extracted.parquet")
    assert sorted(set(table.column("video_id").to_pylist())) == sorted(CLIPS)
    assert {"text", "audio"} <= set(table.column_names)
    # Same cache whichever runner computed it: a thread-runner re-run recomputes nothing.
    res = run([c if c != "dask" else "threads" for c in cmd], server.env(), cwd=tmp_path, timeout=400)
    assert res.returncode == 0, res.stdout[-4000:]
    s = json_tail(res.stdout)
    assert (s["n_computed"], s["n_cached"]) == (0, 2), s
