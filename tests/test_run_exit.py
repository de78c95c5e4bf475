"""Clean exit: ``affectflow run`` starts its temporary Prefect server as a child that dies with it. The
command blocks right after the server is healthy (``AFFECTFLOW_BLOCK_AT=server-up``, a deterministic point)
and is then killed with SIGKILL, or interrupted with SIGINT (Ctrl-C); the server must be gone within a
bounded wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its reaping is left to its new parent


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_no_server_outlives_the_command(tmp_path: Path, sig: int, rc: int) -> None:
    marker = tmp_path / "up.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), AFFECTFLOW_BLOCK_AT="server-up", AFFECTFLOW_BLOCK_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "affectflow.cli", "run", "--store", "store", "--out", "runs"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    server_pid = None
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():  # blocked for good once the file is there
            assert proc.poll() is None, "affectflow run exited before its server was up"
            assert time.monotonic() < deadline, "the temporary server never became healthy"
            time.sleep(0.2)
        server_pid = json.loads(marker.read_text())["server_pid"]
        assert _alive(server_pid)
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=60) == rc
        deadline = time.monotonic() + 30
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), f"Prefect server {server_pid} outlived `affectflow run`"
    finally:
        for pid in (proc.pid, server_pid):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
