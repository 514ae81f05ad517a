"""Deploying segflow to a Prefect server: the `process` work pool `segflow` and the deployments of
`deployments/prefect.yaml` (`segment-users/daily`, `score-users/hourly`), applied with `prefect deploy` with
the workspace, the source and the repository filled in."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
DEFAULT_API_URL = "http://127.0.0.1:4200/api"  # what `prefect server start` serves
WORK_POOL = "segflow"


class DeployError(RuntimeError):
    """No Prefect server answers, or it refused the deployments."""


def server_answers(api_url: str, timeout_s: float = 3) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ensure_work_pool(api_url: str) -> bool:
    """The `process` work pool `segflow` on the server; True when this call created it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            client.read_work_pool(WORK_POOL)
            return False
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=WORK_POOL, type="process", base_job_template=template)
            )
            return True


def apply_deployments(api_url: str, workspace_root: Path, source: str, prefect_home: Path) -> None:
    """`prefect deploy --all` of deployments/prefect.yaml against the server, with the parameters' defaults
    (workspace, source) and the repository the worker runs from given through the environment."""
    from tasks.ingest.sources import source_location  # pydantic and duckdb: only when deploying

    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(prefect_home),
        "SEGFLOW_WORKSPACE": str(workspace_root),
        "SEGFLOW_SOURCE": source_location(source),  # a deployment runs from the repository, not from here
        "SEGFLOW_REPO": str(REPO_ROOT),
    }
    command = [
        str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all",
        "--prefect-file", str(PREFECT_FILE),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()][-5:]
        raise DeployError(f"`prefect deploy` failed (exit {done.returncode}):\n" + "\n".join(tail))


def read_deployments(api_url: str) -> list[dict]:
    """Each deployment on the work pool: name (flow/deployment), cron schedules, parameters, paused."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        flows = {d.flow_id: client.read_flow(d.flow_id).name for d in deployments}
    return sorted(
        (
            {
                "name": f"{flows[d.flow_id]}/{d.name}",
                "crons": [getattr(s.schedule, "cron", None) for s in d.schedules],
                "parameters": dict(d.parameters),
                "work_pool": d.work_pool_name,
                "paused": d.paused,
            }
            for d in deployments
            if d.work_pool_name == WORK_POOL
        ),
        key=lambda d: d["name"],
    )
