"""`affectflow audit` on real MOSI features: the published text-CNN / 3D-CNN / context features are flagged,
the openSMILE audio is not; our own UCLN context is flagged in-sample and passes cross-fitted."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from affectflow.cli import main
from pipeline.audit import AuditConfig, audit_features, format_audit
from pipeline.context import train_ucln_per_modality, write_context_features
from pipeline.crossfit import InSampleFeaturesWarning
from pipeline.importers.legacy_pickle import import_legacy_pickle
from pipeline.importers.table import import_embedded_default
from pipeline.store import read_feature_set
from pipeline.train import TrainConfig, train

# Small and seeded: 3 folds, 200 bootstrap draws, a 4-point C grid (the leaks are 20-40 points wide).
FAST = AuditConfig(k=3, n_boot=200, c_grid=(1e-3, 1e-2, 1e-1, 1.0), seed=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory, mosi_dir):
    s = tmp_path_factory.mktemp("audit") / "store"
    import_embedded_default(s)
    import_legacy_pickle(mosi_dir / "unimodal_mosi_2way.dev.pickle", store=s, dataset="mosi",
                         segments=mosi_dir / "segments.csv", feature_set="bclstm-context")
    return s


@pytest.mark.parametrize("feature_set", ["bclstm-raw", "bclstm-context"])
def test_published_mosi_text_and_video_leak_audio_does_not(store, feature_set):
    res = audit_features(store, "mosi", feature_set, FAST)
    assert res["reference_split"] == "valid"
    assert res["leaking"] == ["text", "video"], format_audit(res)
    mods = res["modalities"]
    # The numbers behind the verdict: ~98% / ~91% inside train against ~75% / ~55% on the clean valid videos.
    assert mods["text"]["inside_train"] > 0.95 and mods["text"]["valid"]["accuracy"] < 0.82
    assert mods["video"]["inside_train"] > 0.85 and mods["video"]["valid"]["accuracy"] < 0.65
    assert mods["audio"]["valid"]["lo"] <= mods["audio"]["inside_train"] <= mods["audio"]["valid"]["hi"]
    assert mods["text"]["valid"]["n"] == 240 and mods["text"]["valid"]["n_videos"] == 10
    assert mods["text"]["n_train_videos"] == 62
    # with fewer held-out videos than the minimum there is no verdict at all
    few = audit_features(store, "mosi", feature_set, FAST.model_copy(update={"min_heldout_videos": 11}))
    assert few["leaking"] == [] and not any(r["decided"] for r in few["modalities"].values())
    assert "no verdict: 10 held-out videos (< 11)" in format_audit(few)


@pytest.fixture(scope="module")
def audio_context(store, tmp_path_factory):
    """UCLN on the clean openSMILE audio, long enough to fit its training videos; context written twice."""
    out = tmp_path_factory.mktemp("ucln")
    cfg = TrainConfig(model="ucln", epochs=40, patience=40, batch_size=10, modalities=["audio"])
    runs = train_ucln_per_modality(cfg, store=store, dataset="mosi", features="bclstm-raw", out_dir=out,
                                   write_context="ctx-in", progress=None)
    write_context_features(runs, store=store, dataset="mosi", feature_set="ctx-cf", cross_fit=3)
    return store


def test_in_sample_ucln_context_is_flagged_cross_fitted_passes(audio_context):
    inside = audit_features(audio_context, "mosi", "ctx-in", FAST)
    crossed = audit_features(audio_context, "mosi", "ctx-cf", FAST)
    assert inside["leaking"] == ["audio"], format_audit(inside)
    assert crossed["leaking"] == [], format_audit(crossed)
    # every row of the cross-fitted set comes from the fold UCLNs (valid: their average)
    a, b = (read_feature_set(audio_context, "mosi", fs) for fs in ("ctx-in", "ctx-cf"))
    train = (a.segments["split"] == "train").to_numpy()
    assert not np.allclose(a.features["audio"][train], b.features["audio"][train])
    assert not np.allclose(a.features["audio"][~train], b.features["audio"][~train])
    assert b.meta.extra["cross_fit"] == {"k": 3, "seed": 0, "groups": "video", "heldout": "average",
                                         "n_train_videos": 62}
    assert a.meta.extra["cross_fit"] is None
    assert crossed["modalities"]["audio"]["inside_train"] < inside["modalities"]["audio"]["inside_train"] - 0.15


def test_training_on_in_sample_features_warns_naming_the_producer(audio_context, tmp_path):
    cfg = TrainConfig(model="mlp", epochs=1)
    with pytest.warns(InSampleFeaturesWarning, match=r"ucln \(mosi/ctx-in\)"):
        train(cfg, store=audio_context, dataset="mosi", features="ctx-in", out_dir=tmp_path / "a", progress=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InSampleFeaturesWarning)
        train(cfg, store=audio_context, dataset="mosi", features="ctx-cf", out_dir=tmp_path / "b", progress=None)


def test_cli_json_plot_and_bad_input(store, tmp_path, capsys):
    png = tmp_path / "audit.png"
    rc = main(["audit", "--store", str(store), "--dataset", "mosi", "--features", "text=bclstm-raw,audio=bclstm-raw",
               "--k", "3", "--n-boot", "100", "--json", "--plot", str(png)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["leaking"] == ["text"] and list(res["modalities"]) == ["text", "audio"]
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["audit", "--store", str(store), "--dataset", "mosi", "--features", "nope"]) == 2
    assert main(["audit", "--store", str(store), "--dataset", "mosi", "--features", "bclstm-raw", "--k", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no feature set 'nope'" in err[0] and "--k" in err[1]
