"""`segflow deploy` against a real Prefect server started by the test: both deployments registered with
their schedules and the workspace and source as parameter defaults, a clear error when no server answers,
and a worker that runs a triggered `segment-users/daily` to COMPLETED with the segments published."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.deploy import read_deployments
from tasks.ingest.sources import source_location
from tasks.workspace import Workspace, start_prefect_server

SEGFLOW = str(Path(sys.executable).parent / "segflow")
PREFECT = str(Path(sys.executable).parent / "prefect")


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect API server of its own (its own database), for the module; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-server")
    saved = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    try:
        started = start_prefect_server(Workspace(workspace=home / "ws"))
    finally:
        os.environ["PREFECT_HOME"] = saved or ""
    started.wait_until_ready(120)
    yield started.api_url
    started.stop()


def env_for(api_url: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url}


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory):
    """One `segflow deploy --source demo:200` on the module's server, shared: the worker runs what it made, and
    the registration is checked on its output (deploying costs ~20 s: `prefect deploy` imports every flow)."""
    workspace = tmp_path_factory.mktemp("deployed") / "ws"
    done = subprocess.run(
        [SEGFLOW, "deploy", "--workspace", str(workspace), "--source", "demo:200"],
        env=env_for(server), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return workspace, done.stdout


def test_deploy_without_a_server_says_how_to_start_one(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/api"
    workspace = tmp_path / "ws"
    done = subprocess.run([SEGFLOW, "deploy", "--workspace", str(workspace)], env=env_for(url), capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert lines(done.stderr) == [
        f"error: no Prefect server answers at {url}: start one with `prefect server start --host 127.0.0.1` "
        "(it serves http://127.0.0.1:4200/api) and leave it running, or set PREFECT_API_URL to yours; then run "
        "this again"
    ]
    assert not workspace.exists()


def test_a_source_path_is_stored_absolute_since_the_worker_runs_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert source_location("shop/source.toml") == str(tmp_path / "shop" / "source.toml")
    assert source_location("movielens:ml") == f"movielens:{tmp_path / 'ml'}"
    assert source_location("demo:300:titles") == "demo:300:titles"


@pytest.mark.slow
def test_deploy_registers_both_deployments_with_their_schedules_and_defaults(server, deployed):
    workspace, stdout = deployed
    assert lines(stdout)[0] == f"work pool segflow (created) on {server}"
    assert lines(stdout)[-1] == f"run them with: PREFECT_API_URL={server} prefect worker start --pool segflow"
    deployments = read_deployments(server)
    assert [(d["name"], d["crons"], d["work_pool"], d["paused"]) for d in deployments] == [
        ("score-users/hourly", ["30 * * * *"], "segflow", False),
        ("segment-users-on-cluster/on-cluster", [], "segflow", False),
        ("segment-users/daily", ["0 3 * * *"], "segflow", False),
    ]
    assert all(d["parameters"] == {"source": "demo:200", "workspace": str(workspace)} for d in deployments)


def run_to_the_end(client, name: str, parameters: dict, timeout_s: float = 420):
    """Trigger a deployment's run and wait for its final state."""
    run = client.create_flow_run_from_deployment(
        client.read_deployment_by_name(name).id, parameters=parameters
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.read_flow_run(run.id).state
        if state is not None and state.is_final():
            return state
        time.sleep(2)
    return state


@pytest.mark.slow
def test_a_worker_runs_triggered_daily_and_hourly_runs_to_completed_and_publishes(server, deployed):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workspace, _ = deployed
    # The runs take their source and workspace from the deployments' defaults: still the shared deploy's
    # (the test that deploys again comes after this one).
    assert {d["parameters"]["source"] for d in read_deployments(server)} == {"demo:200"}
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "segflow", "--limit", "1"], env=env_for(server),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        with temporary_settings({PREFECT_API_URL: server}), get_client(sync_client=True) as client:
            # A small run, the parameters a person would type; one family (the families have their own tests).
            settings = {"embedding": "combined", "k": 4, "micro_k": 3, "k_max": 6}
            daily = run_to_the_end(client, "segment-users/daily", {"settings": settings})
            # then the hourly scoring, with its defaults: the workspace the daily run published to
            hourly = run_to_the_end(client, "score-users/hourly", {})
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:  # still a failure, but no worker left behind polling a dead server
            os.killpg(worker.pid, signal.SIGKILL)
            raise
    assert daily.type.value == "COMPLETED", daily
    assert hourly.type.value == "COMPLETED", hourly
    assert (workspace / "exports" / "current" / "user_segments.parquet").is_file()


@pytest.mark.slow
def test_deploying_again_keeps_the_work_pool_and_updates_the_defaults(server, deployed):
    workspace, _ = deployed
    # Without --source, the source the workspace was read from (its runs read demo:200), not the demo.
    again = subprocess.run([SEGFLOW, "deploy", "--workspace", str(workspace)], env=env_for(server), capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0 and lines(again.stdout)[:2] == [
        "note: no --source: using this workspace's source, demo:200",
        f"work pool segflow (already there) on {server}",
    ]
    assert [d["parameters"]["source"] for d in read_deployments(server)] == [
        "demo:200",
        "demo:200",
        "demo:200",
    ]
    again = subprocess.run([SEGFLOW, "deploy", "--workspace", str(workspace), "--source", "demo"], env=env_for(server), capture_output=True, text=True)  # fmt: skip
    assert (
        again.returncode == 0 and lines(again.stdout)[0] == f"work pool segflow (already there) on {server}"
    )
    assert [d["parameters"]["source"] for d in read_deployments(server)] == ["demo", "demo", "demo"]
    # Another workspace takes the deployments over: said, not done silently (helper 22).
    other = workspace.parent / "other"
    moved = subprocess.run([SEGFLOW, "deploy", "--workspace", str(other)], env=env_for(server), capture_output=True, text=True)  # fmt: skip
    assert moved.returncode == 0 and lines(moved.stdout)[-2] == (
        f"note: the deployments ran on {workspace} until now; they run on {other.resolve()}. A server schedules "
        "one workspace: give another workspace a server of its own (PREFECT_API_URL)"
    )


def test_deploy_finds_the_server_segflow_server_start_runs_for_the_workspace(server, tmp_path):
    """`segflow server start --port N` records its address in the workspace; deploy went to the default port
    instead (helper 22). Without PREFECT_API_URL it now deploys there (last in this module: it re-points the
    deployments)."""
    workspace = Workspace(workspace=tmp_path / "ws")
    workspace.prefect_home.mkdir(parents=True)
    # As tasks/servers.record_server writes it; this test's own process stands in for the live server's pid.
    (workspace.prefect_home / "server.json").write_text(f'{{"api_url": "{server}", "pid": {os.getpid()}}}')
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run([SEGFLOW, "deploy", "--workspace", str(workspace.root)], env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout)[0] == f"work pool segflow (already there) on {server}"
    assert {d["parameters"]["workspace"] for d in read_deployments(server)} == {str(workspace.root.resolve())}
