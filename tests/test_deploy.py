"""Deployments for real: `prefect deploy` from prefect.yaml against a running `prefect server start`,
a process work-pool worker, `prefect deployment run ... --watch` until Completed, then the store is
checked; every process we start is stopped by its id."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from prefect_server import BIN, QUICK_PARAMS, ROOT, Server, get_server, run, shared_rebuild, stop

POOL = "affectflow-process"


@pytest.fixture(scope="module")
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    server = get_server(request.config)
    env = server.env()
    res = run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env, timeout=120)
    assert res.returncode == 0, res.stdout
    res = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, cwd=ROOT, timeout=180)
    assert res.returncode == 0, res.stdout
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "w") as fh:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "1"],
                                  env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    yield server, worker, log
    stop(worker)


def test_prefect_yaml_declares_both_deployments() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in doc["deployments"]}
    assert set(deps) == {"scheduled-rebuild", "extract-new-corpus"}
    for d in deps.values():
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and f"def {func}(" in (ROOT / path).read_text()
        assert d["work_pool"]["name"] == POOL
    cron = deps["scheduled-rebuild"]["schedules"][0]["cron"]
    assert len(cron.split()) == 5


@pytest.mark.slow
def test_deployment_runs_to_completion(deployed: tuple[Server, subprocess.Popen, Path],
                                      request: pytest.FixtureRequest) -> None:
    server, worker, log = deployed
    # Same store and parameters as the shared CLI rebuild: the deployment run must be all cache hits.
    rebuilt = shared_rebuild(request.config)
    env = server.env()
    res = run([str(BIN / "prefect"), "deployment", "ls"], env, timeout=120)
    assert "rebuild/scheduled-rebuild" in res.stdout and "extract-corpus/extract-new-corpus" in res.stdout, res.stdout
    res = run([str(BIN / "prefect"), "deployment", "inspect", "rebuild/scheduled-rebuild"], env, timeout=120)
    assert "0 3 * * 1" in res.stdout, res.stdout

    store, out = rebuilt.root / "store", rebuilt.root / "runs"
    cmd = [str(BIN / "prefect"), "deployment", "run", "rebuild/scheduled-rebuild",
           "-p", f"store={store}", "-p", f"out={out}", "-p", "report=false",
           "-p", f"ucln={json.dumps(QUICK_PARAMS['ucln'])}",
           "-p", f"fusion_train={json.dumps(QUICK_PARAMS['fusion_train'])}",
           "--watch", "--watch-timeout", "400"]
    res = run(cmd, env, timeout=450)
    assert worker.poll() is None, log.read_text()[-3000:]
    assert res.returncode == 0 and "Completed" in res.stdout, res.stdout[-3000:] + log.read_text()[-3000:]
    assert (store / "mosi" / "bclstm-raw.parquet").is_file()
    assert (store / "mosi" / "ucln-context.parquet").is_file()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["metrics"]["argf"] == rebuilt.first["metrics"]["argf"]
    assert not any(s["recomputed"] for s in summary["stages"]), summary["stages"]
