"""kill -9 in the middle of a rebuild, run it again: the store ends identical to an uninterrupted run's,
with no partial files, and the stages finished before the kill are not redone."""

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
def test_kill_9_then_rerun_gives_the_same_store(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    ref = shared_rebuild(request.config)  # the uninterrupted run (same parameters)
    env = get_server(request.config).env()
    cmd = [str(BIN / "affectflow"), "run", "--store", "store", "--out", "runs", "--json", *QUICK_ARGS]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # Wait until the first UCLN run is published (the second is then training), then kill -9.
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("runs/ucln-text/*")):
            assert proc.poll() is None, "rebuild ended before it could be killed"
            assert time.monotonic() < deadline, "rebuild never reached the second UCLN"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "store" / "mosi" / "ucln-context.parquet").exists()

    res = run(cmd, env, cwd=tmp_path, timeout=500)
    assert res.returncode == 0, res.stdout[-4000:]
    summary = json_tail(res.stdout)
    redone = {s["stage"]: s["recomputed"] for s in summary["stages"]}
    assert redone["ingest"] is False and redone["ucln-text"] is False, redone  # finished before the kill
    assert redone["ucln-audio"] is True, redone

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
