"""The restricted unpickler: numpy pickles load, anything that references another global executes nothing."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from pipeline.errors import InputError, UnsafePickleError
from pipeline.safe_pickle import ALLOWED_GLOBALS, safe_load, safe_loads


def _system_pickle(cmd: str) -> bytes:
    # Protocol-0 program: GLOBAL os.system, push the command, REDUCE -> os.system(cmd).
    return b"cos\nsystem\n(V" + cmd.encode() + b"\ntR."


def _eval_pickle_protocol4(code: str) -> bytes:
    class Evil:
        def __reduce__(self):
            return (eval, (code,))

    return pickle.dumps({"text_train": Evil()}, protocol=4)


def test_malicious_os_system_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pickle"
    bad.write_bytes(_system_pickle(f"touch {marker}"))
    # Sanity: the plain unpickler *would* run it (so this test can fail).
    probe = tmp_path / "probe"
    pickle.loads(_system_pickle(f"touch {probe}"))
    assert probe.exists()

    with pytest.raises(UnsafePickleError) as e:
        safe_load(bad)
    msg = str(e.value)
    assert "os.system" in msg or "posix.system" in msg
    assert str(bad) in msg and "nothing was executed" in msg
    assert not marker.exists()


def test_builtins_eval_via_stack_global_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    bad = tmp_path / "evil4.pickle"
    bad.write_bytes(_eval_pickle_protocol4(f"open({str(marker)!r}, 'w').write('x')"))
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        safe_load(bad)
    assert not marker.exists()


def test_codecs_other_than_latin1_refused():
    data = pickle.dumps(b"abc", protocol=2)  # uses _codecs.encode(..., 'latin1')
    assert safe_loads(data) == b"abc"
    evil = data.replace(b"latin1", b"utf_16")
    with pytest.raises(UnsafePickleError, match="codec"):
        safe_loads(evil)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_scalars_round_trip(protocol):
    obj = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "m": np.array([[1.0, 0.0]]),
        "s": np.float64(2.5),
        "i": [np.int64(3), (1, "x")],
        "fortran": np.asfortranarray(np.eye(3)),
    }
    out = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert np.array_equal(out["a"], obj["a"]) and out["a"].dtype == np.float32
    assert out["s"] == 2.5 and out["i"][0] == 3 and out["i"][1] == (1, "x")
    assert np.array_equal(out["fortran"], obj["fortran"])


def test_object_of_arbitrary_class_refused():
    data = pickle.dumps({"x": io.StringIO("hi")}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"_io\.StringIO"):
        safe_loads(data)


def test_real_python2_era_mosi_pickle_loads(mosi_pickle):
    d = safe_load(mosi_pickle)
    assert d["text_train"].shape == (62, 63, 50) and d["train_label"].shape == (62, 63, 2)
    assert int(d["train_mask"].sum()) == 1447


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        safe_load(tmp_path / "absent.pickle")
    junk = tmp_path / "junk.pickle"
    junk.write_bytes(b"\x80\x02garbage")
    with pytest.raises(InputError, match="not a readable pickle") as e:
        safe_load(junk)
    assert str(junk) in str(e.value)


def test_allow_list_is_small():
    assert all(g.startswith(("numpy", "_codecs")) for g in ALLOWED_GLOBALS)
