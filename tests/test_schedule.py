"""Schedules that fire, on SQLite and on PostgreSQL: a real ``prefect server start`` whose own scheduler
service must (1) create the Scheduled runs of the weekly rebuild right after ``prefect deploy --all``
and (2) keep creating runs of an interval deployment of the same flow, which a process worker then runs
to Completed. Nothing here creates a flow run by hand: every run the test sees is auto-scheduled.

SQLAlchemy 2.1 breaks step (1) (every scheduler pass fails with ``Can't evaluate bulk DML statement``
and no run is ever created); pyproject.toml pins ``sqlalchemy<2.1`` for that reason.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import postgres
import pytest
import yaml
from prefect_server import BIN, QUICK_PARAMS, ROOT, Server, run, start_server, stop

POOL = "affectflow-process"
INTERVAL_S = 10
# The scheduler's default loop is 60 s; a short one keeps the test fast without changing what runs.
SCHEDULER = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
             "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1"}


def api(server: Server, path: str, body: dict | None = None) -> Any:
    req = urllib.request.Request(f"{server.url}{path}", method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def flow_runs(server: Server, deployment_id: str) -> list[dict]:
    return api(server, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                             "sort": "EXPECTED_START_TIME_ASC", "limit": 200})


def at_least(n: int, runs: list[dict], state_type: str) -> list[dict]:
    """The runs in ``state_type`` if there are ``n`` or more, else [] (a :func:`poll` check)."""
    found = [r for r in runs if r["state_type"] == state_type]
    return found if len(found) >= n else []


def poll(what: str, check: Callable[[], Any], timeout: float, context: Callable[[], str]) -> Any:
    """``check()`` until it returns something truthy; fail with ``context()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{context()}")
        time.sleep(1)


def ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.fixture(params=["sqlite", "postgres"])
def scheduling_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A fresh server with a fast scheduler loop, on Prefect's default SQLite or on PostgreSQL."""
    with postgres.postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        settings = dict(SCHEDULER, **({"PREFECT_API_DATABASE_CONNECTION_URL": url} if url else {}))
        server = start_server(**settings)
        try:
            yield server
        finally:
            stop(server.proc)
            shutil.rmtree(server.home, ignore_errors=True)


def _tail(server: Server, *logs: Path) -> str:
    return "\n".join(f"--- {p}:\n{p.read_text()[-3000:]}" for p in (server.log, *logs) if p.exists())


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_postgres_skips_except_under_ci(ci: str, outcome: type, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """No initdb on PATH nor under the Debian layout: skip with the reason, but fail when CI=true."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN_PG_LIB", tmp_path)
    monkeypatch.setenv("CI", ci)
    # BaseException: a skip where a failure is due must fail this test, not skip it.
    with pytest.raises(BaseException) as raised, postgres.postgres_database():
        pass
    assert raised.type is outcome and "initdb, pg_ctl" in str(raised.value), raised


@pytest.mark.slow
def test_schedules_fire(scheduling_server: Server, tmp_path: Path) -> None:
    server, env = scheduling_server, scheduling_server.env()
    prefect = str(BIN / "prefect")
    res = run([prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"], env, timeout=120)
    assert res.returncode == 0, res.stdout
    manifest = (ROOT / "prefect.yaml").read_bytes()
    res = run([prefect, "--no-prompt", "deploy", "--all"], env, cwd=ROOT, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:]

    # (1) The weekly rebuild: the scheduler fills its Upcoming list (3 runs by default) on its own.
    weekly = api(server, "/deployments/name/rebuild/scheduled-rebuild")
    cron = yaml.safe_load(manifest)["deployments"][0]["schedules"][0]["cron"]
    assert weekly["schedules"][0]["schedule"]["cron"] == cron
    upcoming = poll("3 Scheduled runs of rebuild/scheduled-rebuild",
                    lambda: at_least(3, flow_runs(server, weekly["id"]), "SCHEDULED"), 60, lambda: _tail(server))
    now = datetime.now(UTC)
    for r in upcoming:  # "0 3 * * 1": Mondays 03:00 UTC, in the future, created by the scheduler
        start = ts(r["expected_start_time"])
        assert (start.weekday(), start.hour, start.minute) == (0, 3, 0) and start > now, r
        assert r["auto_scheduled"], r

    # (2) The same flow on a short interval, served by a process worker: runs reach Completed unasked.
    store, out = tmp_path / "store", tmp_path / "runs"
    params = {"store": str(store), "out": str(out), "report": False, **QUICK_PARAMS}
    res = run([prefect, "--no-prompt", "deploy", "flows/rebuild.py:rebuild", "--name", "every-10s", "--pool", POOL,
               "--interval", str(INTERVAL_S), "--params", json.dumps(params)], env, cwd=ROOT, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:]
    assert (ROOT / "prefect.yaml").read_bytes() == manifest, "prefect deploy must not rewrite prefect.yaml"
    every = api(server, "/deployments/name/rebuild/every-10s")
    assert every["schedules"][0]["schedule"]["interval"] == INTERVAL_S

    worker_log = tmp_path / "worker.log"
    with open(worker_log, "w") as fh:
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"],
                                  env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def completed() -> list[dict]:
            runs = flow_runs(server, every["id"])
            bad = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
            assert not bad, f"{bad[0]['state']}\n{_tail(server, worker_log)}"
            return at_least(2, runs, "COMPLETED")

        done = poll("two Completed runs of rebuild/every-10s", completed, 420, lambda: _tail(server, worker_log))
        server_log = server.log.read_text()  # before the worker (and a run it may have started) is stopped
    finally:
        stop(worker)
    assert all(r["auto_scheduled"] for r in done), done
    for r in done:  # the measured numbers docs/orchestration.md quotes (pytest -s prints them)
        slot = ts(r["expected_start_time"])
        print(f"scheduled run {r['name']}: Running {(ts(r['start_time']) - slot).total_seconds():.1f} s "
              f"after its slot, Completed {(ts(r['end_time']) - slot).total_seconds():.1f} s after it "
              f"(run time {r['total_run_time']:.1f} s)")
    assert (store / "mosi" / "ucln-context.parquet").is_file()
    # No pass of the server's services hit an ORM incompatibility (SQLAlchemy 2.1's failure is one). Not
    # "no traceback at all": a loaded machine can make SQLite report "database is locked" now and then.
    assert "sqlalchemy.exc.InvalidRequestError" not in server_log, _tail(server)
