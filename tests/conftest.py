"""Shared fixtures: offline defaults, one Prefect test harness per session, a fresh workspace."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.workspace import DEFAULT_ENVIRONMENT

for _name, _value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="segflow-prefect-")
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture(scope="session")
def spark_master() -> Iterator[str]:
    """A local Spark session for the whole test session (started once, ~10 s); tests pass its master URL
    to the code under test, which reuses the session."""
    from tasks.engine.spark import spark_session

    master = "local[2]"
    session = spark_session(master)
    yield master
    session.stop()
