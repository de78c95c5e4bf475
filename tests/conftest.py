"""Shared fixtures. Real data lives in ../shared/data (see its README); tests that need it skip with a
clear reason when it is absent, never pass silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AFFECTFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under the shared real-data folder, or skip the test saying what is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (set AFFECTFLOW_SHARED_DATA to ../shared/data)")
    return p


@pytest.fixture(scope="session")
def mosi_dir() -> Path:
    return shared_path("mosi")


@pytest.fixture(scope="session")
def mosi_pickle() -> Path:
    return shared_path("mosi", "unimodal_mosi_2way.dev.pickle")


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    return shared_path("clips")


@pytest.fixture(scope="session")
def glove_txt() -> Path:
    return shared_path("glove", "glove.6B.50d.mosi_vocab.txt")


@pytest.fixture(autouse=True, scope="session")
def _deterministic_torch() -> None:
    # Two cores in CI: one intra-op thread keeps runs deterministic and avoids oversubscription.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    """Prefect's test harness (temporary database, ephemeral server) with this offline machine's
    settings (../shared/DEPENDENCIES.md), one per test module; the environment is restored after."""
    env = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect_home")),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=90):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
