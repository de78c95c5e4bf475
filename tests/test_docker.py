"""docker/: the compose file is a coherent PostgreSQL + Prefect server + affectflow worker stack, and the
image installs exactly what pyproject.toml pins (no docker engine needed to check either)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pin(name: str) -> str:
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", dep.replace(" ", ""))
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned with == in pyproject.toml")


def _run_lines() -> list[str]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_image_installs_what_pyproject_pins() -> None:
    runs = _run_lines()
    torch = [r for r in runs if "torch==" in r]
    assert len(torch) == 1 and f"torch=={_pin('torch')}" in shlex.split(torch[0])
    assert "download.pytorch.org/whl/cpu" in torch[0]  # the CPU build, as the Makefile's local wheel
    assert f"torch=={_pin('torch')}" in (ROOT / "Makefile").read_text()
    # torch strictly before the project's own dependency install, which reads pyproject.toml.
    deps = next(i for i, r in enumerate(runs) if re.search(r"pip install \"?\.\[", r))
    assert runs.index(torch[0]) < deps
    extras = re.search(r"\.\[([\w,-]+)\]", runs[deps]).group(1).split(",")
    assert set(extras) <= set(_pyproject()["project"]["optional-dependencies"])
    assert any("pip install --no-deps -e ." in r for r in runs[deps + 1:])
    # The image holds the SQLAlchemy pin too: it installs from pyproject.toml and `pip check`s the result
    # while the project's metadata (with the pin) is still installed.
    assert "sqlalchemy>=2.0,<2.1" in _pyproject()["project"]["dependencies"]
    assert re.search(r"pip install \"?\.\[[\w,-]+\]\"? && pip check && pip uninstall -y affectflow", runs[deps])
    text = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^FROM python:(\d+\.\d+)", text, re.M).group(1)
    assert base == "3.11" and ">=3.11" in _pyproject()["project"]["requires-python"]
    for src in re.findall(r"^COPY (?!\. )(.+) \S+$", text, re.M):
        for p in src.split():
            assert (ROOT / p).exists(), p
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "store", "runs", ".git"} <= set(ignored)


def test_compose_stack_is_coherent() -> None:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"postgres", "prefect-server", "worker"}
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:") and "healthcheck" in pg
    user, db = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"]

    server = services["prefect-server"]
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert re.fullmatch(rf"postgresql\+asyncpg://{user}:[^@]+@postgres:5432/{db}", url), url
    assert server["command"][:3] == ["prefect", "server", "start"] and "0.0.0.0" in server["command"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert server["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    port = server["command"][server["command"].index("--port") + 1]
    assert f"{port}:{port}" in server["ports"]

    worker = services["worker"]
    assert worker["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    script = " ".join(worker["command"])
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"][0]["work_pool"]["name"]
    assert f"work-pool create {pool} --type process" in script and f"worker start --pool {pool}" in script
    assert "deploy --all" in script
    for svc in (server, worker):  # one image for server and worker: the same Prefect as pyproject pins
        assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["image"] == "affectflow:0.1.0"
    mounts = {v.split(":")[1] for v in worker["volumes"]}
    assert {"/opt/affectflow/store", "/opt/affectflow/runs"} <= mounts
    named = {v.split(":")[0] for v in worker["volumes"] + pg["volumes"] if not v.startswith(("$", ".", "/"))}
    assert named <= set(doc["volumes"])
    assert yaml.safe_load((ROOT / "prefect.yaml").read_text())["prefect-version"] == _pin("prefect")
