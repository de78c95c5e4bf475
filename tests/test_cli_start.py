"""Cold start: ``affectflow --help`` and ``affectflow store info`` import neither torch nor Prefect
(subcommands import their heavy modules when they run), checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.store import FeatureSet, ModalitySpec, Producer, make_meta, write_feature_set

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import contextlib, io, json, sys
from affectflow.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        rc = main(sys.argv[1:])
    except SystemExit as e:  # --help exits 0 through argparse
        rc = e.code
heavy = sorted(m for m in ("torch", "prefect", "sklearn", "optuna") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy, "out": out.getvalue()}))
"""


def _probe(*argv: str) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_prefect() -> None:
    res = _probe("--help")
    assert res["rc"] == 0 and "train" in res["out"] and "run" in res["out"]
    assert res["heavy"] == []
    res = _probe("run", "--help")  # options generated from RebuildConfig / OrchestrationConfig
    assert res["rc"] == 0 and res["heavy"] == []
    for flag in ("--plan", "--fusion", "--device", "--workers", "--dask-address", "--max-error-rate", "--feature-set"):
        assert flag in res["out"], flag


def test_store_info_imports_neither_torch_nor_prefect(tmp_path: Path) -> None:
    seg = pd.DataFrame({"video_id": ["v", "v"], "segment_id": ["v_0", "v_1"], "segment_index": [0, 1],
                        "start": [0.0, 1.0], "end": [1.0, 2.0], "split": ["train", "valid"],
                        "label_bin": [0, 1]})
    meta = make_meta(dataset="d", feature_set="f", modalities={"text": ModalitySpec(kind="vector", dim=2)},
                     producer=Producer.of("importer", "test", {}), source_hash="x")
    write_feature_set(tmp_path, FeatureSet(meta, seg, {"text": np.ones((2, 2), np.float32)}, {}))
    res = _probe("store", "info", str(tmp_path))
    assert res["rc"] == 0 and "f" in res["out"] and "d" in res["out"]
    assert res["heavy"] == []
