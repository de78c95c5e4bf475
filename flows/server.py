"""A temporary Prefect API server that dies with the command that started it.

``affectflow run`` without ``PREFECT_API_URL`` used to let Prefect start its own temporary server, which
outlived a ``kill -9`` of the command. :func:`start` instead runs ``python -m flows.server PORT PARENT``:
the child asks the kernel to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG`` on Linux), with a
watchdog thread on the parent's pid as a second line (other systems, or a parent that died before the
request), and serves Prefect's app with uvicorn in-process (no grandchild to orphan). Ctrl-C and normal
exits stop it in :meth:`Server.stop`. Importing this module imports neither Prefect nor torch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flows import hooks
from pipeline.errors import AffectflowError


@dataclass
class Server:
    proc: subprocess.Popen
    url: str  # the API URL (…/api)
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log: Path, timeout_s: float = 90.0) -> Server:
    """Start the server (Prefect settings from this process's environment) and wait until it is healthy."""
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "flows.server", str(port), str(os.getpid())], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(proc, f"http://127.0.0.1:{port}/api", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AffectflowError(f"the temporary Prefect server exited with {proc.returncode} (log: {log})")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as r:
                if r.status == 200:
                    hooks.reached("server-up", server_pid=proc.pid, url=server.url)
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise AffectflowError(f"the temporary Prefect server was not healthy after {timeout_s:.0f} s (log: {log})")


def _die_with(parent: int) -> None:
    from pipeline.procs import die_with_parent

    die_with_parent(parent)

    def watch() -> None:  # where PR_SET_PDEATHSIG is not available
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def main(port: int, parent: int) -> None:
    _die_with(parent)
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
