"""MMSA interchange, checked with MMSA 2.2.1's own data loader as the oracle.

MMSA is GPL and not a dependency: the fixture installs it (``--no-deps``) into a throwaway venv cached
under ``$AFFECTFLOW_TEST_CACHE`` (default: the system temp folder), never into the project venv. Its data
loader needs only numpy and torch, which the oracle process takes from the project's environment (no
second torch). The oracle loads ``MMSA/data_loader.py`` by file, not ``import MMSA``, whose package
``__init__`` imports every MMSA model and their dependencies.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sysconfig
import tempfile
import venv
from pathlib import Path

import numpy as np
import pytest

from affectflow.cli import main
from pipeline.errors import UnsafePickleError
from pipeline.importers.mmsa import build_mmsa
from pipeline.importers.splits import HONEST_MOSI_VALID_VIDEOS
from pipeline.importers.table import import_embedded_default
from pipeline.store import FeatureSet, read_feature_set, write_feature_set

MMSA = "MMSA==2.2.1"
ORACLE = r'''
import importlib.util, json, sys
from pathlib import Path
import numpy as np
pkg = Path(importlib.util.find_spec("MMSA").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("mmsa_data_loader", pkg / "data_loader.py")
loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
args = {"dataset_name": "mosi", "custom_feature": None, "featurePath": sys.argv[1], "feature_T": "",
        "feature_A": "", "feature_V": "", "need_data_aligned": True, "need_normalized": False,
        "batch_size": 128, "feature_dims": [0, 0, 0], "seq_lens": [0, 0, 0]}
loaders = loader.MMDataLoader(args, num_workers=0)
out = {"feature_dims": args["feature_dims"], "seq_lens": list(args["seq_lens"])}
for split, dl in loaders.items():
    rows = {"id": [], "raw_text": [], "M": [], "text": [], "audio": [], "vision": []}
    for b in dl:
        rows["id"] += list(b["id"]); rows["raw_text"] += list(b["raw_text"]); rows["M"] += b["labels"]["M"].view(-1).tolist()
        for m in ("text", "audio", "vision"):
            rows[m] += b[m][:, 0, :].tolist()
    out[split] = rows
json.dump(out, open(sys.argv[2], "w"))
'''


@pytest.fixture(scope="session")
def mmsa_python() -> Path:
    cache = Path(os.environ.get("AFFECTFLOW_TEST_CACHE", Path(tempfile.gettempdir()) / "affectflow-test-cache"))
    env_dir = cache / "mmsa-2.2.1-venv"
    py = env_dir / "bin" / "python"
    if not (env_dir / ".installed").is_file():
        venv.create(env_dir, with_pip=True, clear=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", MMSA], capture_output=True, text=True)
        assert r.returncode == 0, f"installing {MMSA} into {env_dir} failed (PyPI needed): {r.stderr[-2000:]}"
        (env_dir / ".installed").write_text(MMSA)
    return py


def _oracle(py: Path, pkl: Path, tmp: Path) -> dict:
    # numpy and torch from the project's environment: the loader's only third-party imports
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    script, out = tmp / "oracle.py", tmp / "oracle.json"
    script.write_text(ORACLE)
    r = subprocess.run([str(py), str(script), str(pkl), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def test_export_is_read_by_mmsa_loader_and_imports_back(mmsa_python, mosi_dir, tmp_path, capsys):
    store = tmp_path / "store"
    import_embedded_default(store)
    # MMSA's MMDataLoader shuffles every split and fails on an empty one; the held-out MOSI test videos are
    # not shipped, so three valid videos play the test split here.
    src = read_feature_set(store, "mosi", "bclstm-raw")
    src.segments.loc[src.segments["video_id"].isin(HONEST_MOSI_VALID_VIDEOS[:3]), "split"] = "test"
    write_feature_set(store, FeatureSet(src.meta.model_copy(update={"feature_set": "three-splits"}), src.segments,
                                        src.features, src.missing))
    pkl = tmp_path / "mosi.pkl"
    assert main(["export", "mmsa", "--store", str(store), "--dataset", "mosi", "--features", "three-splits",
                 "--out", str(pkl)]) == 0
    src = read_feature_set(store, "mosi", "three-splits")
    seg = src.segments
    got = _oracle(mmsa_python, pkl, tmp_path)
    assert got["feature_dims"] == [100, 73, 100] and got["seq_lens"] == [1, 1, 1]
    for split in ("train", "valid", "test"):
        rows = np.flatnonzero((seg["split"] == split).to_numpy())
        want = {f"{v}$_${s[len(v) + 1:]}": i for v, s, i in zip(seg["video_id"].iloc[rows], seg["segment_id"].iloc[rows],
                                                                  rows, strict=True)}
        g = got[split]
        assert sorted(g["id"]) == sorted(want)
        idx = np.array([want[i] for i in g["id"]])
        for m, key in (("text", "text"), ("audio", "audio"), ("video", "vision")):
            np.testing.assert_allclose(np.array(g[key]), src.features[m][idx], rtol=1e-6)
        np.testing.assert_allclose(g["M"], seg["score"].to_numpy(float)[idx], rtol=1e-6)
        assert g["raw_text"] == seg["transcript"].iloc[idx].tolist()
    # and back into a store: same rows, features, splits, labels, scores, transcripts
    assert main(["import", "mmsa", str(pkl), "--store", str(tmp_path / "back"), "--dataset", "mosi"]) == 0
    back = read_feature_set(tmp_path / "back", "mosi", "mmsa")
    assert sorted(set(back.segments["split"])) == ["test", "train", "valid"]
    assert back.meta.producer.name == "mmsa"
    order = back.segments.reset_index().set_index("segment_id").loc[seg["segment_id"], "index"].to_numpy()
    for c in ("video_id", "split", "segment_index", "label_bin", "score", "transcript"):
        assert back.segments[c].iloc[order].tolist() == seg[c].tolist(), c
    for m in ("text", "audio", "video"):
        assert np.array_equal(back.features[m][order], src.features[m])


def test_import_refuses_code_and_wrong_layouts(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"train": {"id": Evil()}}))
    with pytest.raises(UnsafePickleError):
        build_mmsa(evil, dataset="x")
    assert not (tmp_path / "pwned").exists()
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"train": {"text": np.zeros((2, 1, 3), np.float32), "id": ["a$_$1", "a$_$2"]}}))
    assert main(["import", "mmsa", str(bad), "--store", str(tmp_path / "s"), "--dataset", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrong keys in split 'train'" in err and "audio" in err
    assert not (tmp_path / "s" / "x").exists()
    assert main(["import", "mmsa", str(tmp_path / "absent.pkl"), "--store", str(tmp_path / "s"), "--dataset", "x"]) == 2


def test_export_needs_all_three_modalities(mosi_dir, tmp_path, capsys):
    store = tmp_path / "store"
    import_embedded_default(store)
    out = tmp_path / "x.pkl"
    assert main(["export", "mmsa", "--store", str(store), "--dataset", "mosi", "--features",
                 "text=bclstm-raw,audio=bclstm-raw", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs text, audio and video" in err and "['video']" in err
    assert not out.exists()
