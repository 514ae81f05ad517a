"""`--task-runner dask|ray`: the embedding families fit in parallel on a (local) cluster and the run publishes
the same segments as the default runner with the same seed; the scaling options' usage errors."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.runners import make_task_runner, runs_in_parallel
from flows.segment_users import segment_users, segment_users_with_runner
from tasks.segment.settings import SegmentSettings
from tests.helpers import query

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("prefect_harness")
# Two families, so there is something to run in parallel; epochs, not the clock, end the fits, so that the
# same seed gives the same vectors whatever the runner (a time budget stops where the machine's speed says).
OPTIONS = ["--source", "demo:300", "--embedding", "combined,autoencoder", "--k", "6", "--micro-k", "8",
           "--max-epochs", "3", "--time-budget", "600"]  # fmt: skip
SETTINGS = SegmentSettings(embedding="combined,autoencoder", k=6, micro_k=8, max_epochs=3, time_budget_s=600)
SEGMENTS = "select user_id, segment_id, round(distance, 4) from user_segments order by user_id"


def lines(output: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def thread_run(tmp_path_factory):
    """The default runner's published segments and family comparison."""
    workspace = tmp_path_factory.mktemp("thread") / "workspace"
    summary = segment_users(source="demo:300", workspace=str(workspace), settings=SETTINGS)
    return query(workspace, SEGMENTS), summary.families


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task-runner", "spark"], "error: Invalid value for '--task-runner': 'spark': Input should be 'thread', 'dask' or 'ray' (see `segflow run --help`)"),
        (["--devices", "0"], "error: Invalid value for '--devices': 0: Input should be greater than or equal to 1 (see `segflow run --help`)"),
        (["--num-nodes", "0"], "error: Invalid value for '--num-nodes': 0: Input should be greater than or equal to 1 (see `segflow run --help`)"),
    ],
)  # fmt: skip
def test_a_bad_scaling_option_names_the_option_and_exits_2(args, message, workspace):
    result = runner.invoke(app, ["run", *args, "--workspace", str(workspace)])
    assert result.exit_code == 2, result.output
    assert lines(result.output) == [message]


def test_only_a_cluster_runner_runs_tasks_in_parallel():
    assert not runs_in_parallel(make_task_runner("thread"))
    assert runs_in_parallel(make_task_runner("dask"))
    assert runs_in_parallel(make_task_runner("dask", "tcp://127.0.0.1:8786"))


def comparable(families: list[dict]) -> list[tuple]:
    """The comparison without the fit times, which no two runs share."""
    return [(f["family"], f["recall@10"], f["silhouette"], f["chosen"]) for f in families]


NEEDS_RAY = pytest.mark.skipif(
    importlib.util.find_spec("prefect_ray") is None,
    reason="prefect-ray is not installed: it is the optional extra `pip install -e '.[ray]'` (ray is large)",
)


@pytest.mark.slow
@pytest.mark.parametrize("task_runner", ["dask", pytest.param("ray", marks=NEEDS_RAY)])
def test_a_cluster_fits_the_families_in_parallel_and_publishes_the_same_segments(
    task_runner, thread_run, tmp_path
):
    workspace = tmp_path / "workspace"
    settings = SETTINGS.model_copy(update={"task_runner": task_runner})
    summary = segment_users_with_runner(settings)(
        source="demo:300", workspace=str(workspace), settings=settings
    )
    segments, families = thread_run
    assert query(workspace, SEGMENTS) == segments and len(segments) == 300
    assert comparable(summary.families) == comparable(families)
    assert {f["family"] for f in families} == {"combined", "autoencoder"}
