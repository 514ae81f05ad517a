"""Shared fixtures: offline defaults, one Prefect test harness per session, a fresh workspace."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.workspace import DEFAULT_ENVIRONMENT

for _name, _value in DEFAULT_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="segflow-prefect-")
os.environ.pop("PREFECT_API_URL", None)


def import_great_expectations_as_a_script_would() -> None:
    """In a pytest-xdist worker `__main__` has no file, which pyspark.sql.connect (imported by Great
    Expectations) takes for a doctest run without Spark Connect: it calls sys.exit(0) and the flow crashes. With
    a file it raises ImportError, which Great Expectations expects; it is imported once, so once is enough."""
    main = sys.modules["__main__"]
    if main.__spec__ is not None or hasattr(main, "__file__"):
        return
    main.__file__ = __file__
    try:
        from validation.gate import load_great_expectations

        load_great_expectations()
    finally:
        del main.__file__


import_great_expectations_as_a_script_would()

# Under pytest-xdist with `--dist loadscope` (`make test`: `pytest -n 2`) the tests go to
# the workers a module at a time, so that a module's fixtures (a demo run, a server) are made once. The longest modules go first (run
# with --no-loadscope-reorder), so that no long one starts last while the other worker idles; the figures are
# seconds measured on 2 cores; the other modules keep their order.
LONGEST_FIRST = (
    "tests/flows/test_segment_users.py",  # 240 s on ml-latest-small, 76 s for the demo run
    "tests/deployments/test_deploy.py",  # a server, a deploy and a worker's two runs: 150 s
    "tests/flows/test_engine_spark.py",  # 130 s
    "tests/flows/test_task_runners.py",  # dask 50 s (ray 70 s where installed)
    "tests/flows/test_cli_families.py",  # 100 s
    "tests/flows/test_champion.py",  # 95 s
    "tests/flows/test_servers.py",  # 95 s
    "tests/flows/test_cli.py",  # 70 s
    "tests/flows/test_drift_in_run.py",  # 65 s
    "tests/models/test_ddp.py",  # 45 s
    "tests/sql/test_features_portable.py",  # 30 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: the order as written
        return
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


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
