"""A real ``prefect server start`` shared by the Prefect integration tests (one per pytest session).

Started lazily on 127.0.0.1 with a free port and a temporary PREFECT_HOME; stopped by its process id
(its process group) when the session ends. Subprocesses get :func:`env` so flows, workers and Dask
workers all talk to this server instead of each starting an ephemeral one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows import prefect_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Server:
    url: str
    home: Path
    proc: subprocess.Popen
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ + this server's Prefect settings (+ fast polling for runners and workers)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(prefect_env(self.home, self.url, PREFECT_RUNNER_POLL_FREQUENCY="1",
                               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5",
                               PYTHONPATH=str(ROOT), COLUMNS="250"))
        env.update(extra)
        return env


_SERVER: Server | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the process group we created (by its id), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def start_server(**settings: str) -> Server:
    """``prefect server start`` on a free port; ``settings`` are extra server environment variables
    (its database URL, the scheduler's loop intervals)."""
    home = Path(tempfile.mkdtemp(prefix="affectflow-prefect-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # With its UI (the browser test reads its pages), which must call this port, not the default 4200.
    env.update(prefect_env(home, **{"PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": url, **settings}))
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_healthy(url, proc, log)
    except BaseException:
        stop(proc)
        raise
    return Server(url, home, proc, log)


def get_server(config: pytest.Config) -> Server:
    """The session's server: started on first use, stopped when pytest finishes."""
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        _SERVER = start_server()
        server = _SERVER
        config.add_cleanup(lambda: stop(server.proc))
    return _SERVER


@pytest.fixture
def prefect_server(request: pytest.FixtureRequest) -> Server:
    return get_server(request.config)


# The quick rebuild every Prefect test shares: the CLI on the embedded MOSI features, run twice
# (the second run must be served from the cache). Deployment and kill -9 tests reuse its store.
QUICK_ARGS = ["--ucln-epochs", "2", "--fusion-epochs", "3"]
QUICK_PARAMS = {"ucln": {"epochs": 2, "patience": 15, "batch_size": 20},
                "fusion_train": {"epochs": 3, "patience": 10, "batch_size": 32}}


@dataclass
class Rebuilt:
    root: Path
    first: dict
    second: dict


_REBUILT: Rebuilt | None = None


def shared_rebuild(config: pytest.Config) -> Rebuilt:
    global _REBUILT
    if _REBUILT is None:
        server = get_server(config)
        root = Path(tempfile.mkdtemp(prefix="affectflow-rebuild-"))
        config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
        cmd = [str(BIN / "affectflow"), "run", "--store", "store", "--out", "runs", "--json", *QUICK_ARGS]
        outs = []
        for _ in range(2):
            res = run(cmd, server.env(), cwd=root, timeout=500)
            assert res.returncode == 0, res.stdout[-4000:]
            outs.append(json_tail(res.stdout))
        _REBUILT = Rebuilt(root, outs[0], outs[1])
    return _REBUILT


def run(cmd: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command to completion (its own process group, killed on timeout); output captured."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"{cmd} timed out after {timeout} s:\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def flaky_extract(item, cfg):
    """Per-video function for the failure-policy tests: counts attempts in $AFFECTFLOW_TEST_DIR, fails
    items named ``broken*`` permanently (ItemError) and every other item's first attempt transiently
    (OSError), then runs the real ``pipeline.extract.extract_item``."""
    from pipeline.errors import ItemError
    from pipeline.extract import extract_item

    counter = Path(os.environ["AFFECTFLOW_TEST_DIR"]) / f"{item.item_id.replace('/', '_')}.attempts"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if item.item_id.startswith("broken"):
        raise ItemError("simulated permanent failure", item=item.item_id, stage="decode")
    if n == 0:
        raise OSError("simulated transient I/O error")
    return extract_item(item, cfg)


def describe(request: pytest.FixtureRequest, *args: str) -> list[dict]:
    """Flow runs (name, tags, task run names, logs) as tests/run_api.py reads them from the test server."""
    res = run([sys.executable, str(Path(__file__).with_name("run_api.py")), *args], get_server(request.config).env())
    assert res.returncode == 0, res.stdout[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def json_tail(stdout: str) -> dict:
    """The JSON document a ``--json`` command printed last (log lines may come before it)."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    return json.loads(stdout[start:])
