"""A private PostgreSQL server for the Prefect tests: ``initdb`` + ``pg_ctl`` in a fresh temporary
directory on a free port of 127.0.0.1, one database, torn down (``pg_ctl stop``, directory removed)
when the test ends. The system's own clusters are never touched.

PostgreSQL refuses to run as root, so under root every server command runs as the ``postgres`` user
(``runuser``) and the directory is handed to that user. Missing binaries skip the test with the
reason, except under CI (``CI=true``), where they fail it: CI must not silently drop the PostgreSQL
half of the schedule test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from prefect_server import free_port

# Debian's `postgresql` package keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
DEBIAN_PG_LIB = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
DB_USER, DB_PASSWORD, DB_NAME = "prefect", "prefect-test", "prefect"


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI, where a missing PostgreSQL is a broken set-up (see .ci/run)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL is required, .ci/run installs Debian's postgresql)")
    pytest.skip(reason)


def bin_dir() -> Path | None:
    """Directory holding initdb/pg_ctl/createdb: PATH first, then the newest Debian major version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    majors = sorted(DEBIAN_PG_LIB.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                    if p.parent.parent.name.isdigit() else 0)
    return majors[-1].parent if majors else None


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _check(cmd: list[str], what: str, log: Path | None = None) -> None:
    res = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        tail = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}{tail}")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yields Prefect's asyncpg connection URL to its database."""
    bindir = bin_dir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            unavailable(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as")
    # Not under pytest's tmp_path: its parents are private to root, and the server user must reach it.
    root = Path(tempfile.mkdtemp(prefix="affectflow-pg-"))
    data, log, pwfile = root / "data", root / "server.log", root / "pwfile"
    pwfile.write_text(DB_PASSWORD + "\n")
    if os.geteuid() == 0:
        for p in (root, pwfile):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    port = free_port()
    try:
        # Password auth over TCP, as the compose stack's server connects; trust on the private socket only.
        _check([str(bindir / "initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "-E", "UTF8",
                "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _check([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
               "pg_ctl start", log)
        _check([str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", DB_USER, DB_NAME], "createdb", log)
        yield f"postgresql+asyncpg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{port}/{DB_NAME}"
    finally:
        if (data / "postmaster.pid").exists():  # also after a start that timed out but left a server
            subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
