"""``rebuild``'s declared stage graph (flows/graph.py): code keys from the import closure found by walking
``ast`` imports, ``affectflow run --plan`` before anything runs, and, in a copy of the project against a
real rebuild's outputs, a one-line change to pipeline/store.py marks the training stages to run while a
change to a file outside their closure leaves every stage cached."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect_server import QUICK_ARGS, shared_rebuild

from flows.graph import import_closure

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "ucln-text", "ucln-audio", "ucln-video", "context", "train-argf"]


def test_import_closure_is_found_from_the_code() -> None:
    train = {str(p) for p in import_closure(["pipeline.train"])}
    assert "pipeline/store.py" in train  # the reader behind every training stage (pipeline.data -> store)
    assert {"models/argf.py", "models/ucln.py", "models/fusion_baselines.py"} <= train  # Registry("model", "models")
    assert "pipeline/media.py" not in train and "pipeline/extract.py" not in train
    # an import inside a function counts: robustness_run imports pipeline.checkpoint lazily
    assert "pipeline/checkpoint.py" in {str(p) for p in import_closure(["pipeline.robustness"])}
    closure = import_closure(["pipeline.train"])
    assert len(closure) == len(set(closure))  # a file once, whatever the names it is imported under
    ingest = {str(p) for p in import_closure(["pipeline.importers.table"])}
    assert "pipeline/store.py" in ingest and "models/argf.py" not in ingest


def _plan(project: Path, cwd: Path, *args: str) -> dict[str, tuple[str, str]]:
    res = subprocess.run([sys.executable, "-m", "affectflow.cli", "run", "--plan", "--store", "store", "--out", "runs",
                          *QUICK_ARGS, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line.split() for line in res.stdout.splitlines()[2:] if line.strip()]
    return {r[0]: (r[1], " ".join(r[2:4]) if r[2] == "to" else r[2]) for r in rows}


def test_plan_prints_every_stage_before_anything_runs(tmp_path: Path) -> None:
    plan = _plan(ROOT, tmp_path)
    assert list(plan) == STAGES and all(status == "to run" for _, status in plan.values())
    assert not (tmp_path / "store").exists() and not (tmp_path / "runs").exists()  # nothing ran
    assert _plan(ROOT, tmp_path, "--seed", "1")["ingest"] == plan["ingest"]
    assert _plan(ROOT, tmp_path, "--seed", "1")["ucln-text"][0] != plan["ucln-text"][0]


def _copy_project(dest: Path) -> Path:
    for part in ("pipeline", "models", "flows", "affectflow", "data/mosi"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _edit_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith('"""'))  # the module docstring's first line
    lines[i] = lines[i].rstrip("\n") + " (edited)\n"
    path.write_text("".join(lines))


@pytest.mark.slow
def test_store_change_recomputes_training_stages_unrelated_change_does_not(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = shared_rebuild(request.config).root  # a real rebuild's store and runs (same QUICK_ARGS)
    assert all(status == "cached" for _, status in _plan(ROOT, root).values())

    project = _copy_project(tmp_path / "a")
    assert _plan(project, root) == _plan(ROOT, root)  # a copy keys exactly like the original
    _edit_line(project / "pipeline" / "media.py")  # extraction code: outside every stage's closure
    assert all(status == "cached" for _, status in _plan(project, root).values())

    project = _copy_project(tmp_path / "b")
    _edit_line(project / "pipeline" / "store.py")
    plan = _plan(project, root)
    assert all(plan[s][1] == "to run" for s in STAGES), plan  # every stage reads the store
