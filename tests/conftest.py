"""Shared fixtures: one Prefect test harness per session, the shared data folder, a fresh workspace."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tasks.workspace import DEFAULT_ENVIRONMENT

for _name, _value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="segflow-prefect-")
os.environ.pop("PREFECT_API_URL", None)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"
needs_ml_latest_small = pytest.mark.skipif(
    not (ML_LATEST_SMALL / "ratings.csv").exists(),
    reason=f"MovieLens latest-small not found at {ML_LATEST_SMALL} (the shared data folder is absent)",
)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"
