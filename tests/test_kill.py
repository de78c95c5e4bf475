"""kill -9 in the middle of a rebuild, run it again: the store ends identical to an uninterrupted run's,
with no partial files, and the stages finished before the kill are not redone.

The kill point is deterministic: ``AFFECTFLOW_BLOCK_AT=published:<stage>`` makes the rebuild block right
after the stage published its output (before Prefect's cache record and, for a feature set, before it is
linked into the store), and say so in a file; the test waits for that file, then sends SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect_server import BIN, QUICK_ARGS, get_server, json_tail, run, shared_rebuild, stop

from pipeline.store import META_KEY


def _normalised_meta(path: Path, root: Path) -> dict:
    meta = json.loads(pq.read_schema(path).metadata[META_KEY])
    meta.pop("created_at")
    # Absolute paths of the run directories differ between the two roots; nothing else may.
    return json.loads(json.dumps(meta).replace(str(root), "<root>"))


def _store_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(store).parts))


def _partials(*roots: Path) -> list[Path]:
    return [p for r in roots for p in r.rglob("*") if p.name.startswith(".tmp") or p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "next_stage"), [("ucln-text", "ucln-audio"), ("context", "train-argf")])
def test_kill_9_right_after_a_stage_publishes_never_recomputes_it(
    request: pytest.FixtureRequest, tmp_path: Path, stage: str, next_stage: str
) -> None:
    ref = shared_rebuild(request.config)  # the uninterrupted run (same parameters)
    marker = tmp_path / "blocked.json"
    env = get_server(request.config).env(AFFECTFLOW_BLOCK_AT=f"published:{stage}", AFFECTFLOW_BLOCK_FILE=str(marker))
    cmd = [str(BIN / "affectflow"), "run", "--store", "store", "--out", "runs", "--json", *QUICK_ARGS]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not marker.exists():  # the process blocks for good once the file is there: no race
            assert proc.poll() is None, "rebuild ended before it reached the kill point"
            assert time.monotonic() < deadline, f"rebuild never published {stage}"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    published = Path(json.loads(marker.read_text())["output"])
    assert published.is_dir()
    assert not (tmp_path / "store" / "mosi" / "ucln-context.parquet").exists()  # not linked yet, or not made

    del env["AFFECTFLOW_BLOCK_AT"]
    res = run(cmd, env, cwd=tmp_path, timeout=500)
    assert res.returncode == 0, res.stdout[-4000:]
    summary = json_tail(res.stdout)
    redone = {s["stage"]: s["recomputed"] for s in summary["stages"]}
    assert redone["ingest"] is False and redone[stage] is False, redone  # published before the kill
    assert redone[next_stage] is True, redone
    assert {s["stage"]: s["what"] for s in summary["stages"]}[stage] == str(published)

    assert not _partials(tmp_path / "store", tmp_path / "runs")
    ref_store, store = ref.root / "store", tmp_path / "store"
    assert _store_files(store) == _store_files(ref_store) != []
    for name in _store_files(store):
        if not name.endswith(".parquet"):
            continue
        a, b = pq.read_table(store / name), pq.read_table(ref_store / name)
        assert a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None)), name
        assert _normalised_meta(store / name, tmp_path) == _normalised_meta(ref_store / name, ref.root), name
    def scores(metrics: dict) -> dict:
        return {k: v for k, v in metrics["argf"].items() if k != "run"}

    assert scores(summary["metrics"]) == scores(ref.first["metrics"])
