"""The long-running servers of a workspace: the Prefect server (API and UI) and the MLflow UI, on 127.0.0.1.

A Prefect server started here records its address in `prefect/server.json` in the workspace while it runs,
so every segflow command on that workspace uses it instead of starting its own (`find_running_server`).
Both servers are children that die with the command that started them (Linux), so none outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tasks.workspace import PrefectServerError, Workspace, _die_with_parent

HOST = "127.0.0.1"  # nothing binds to a public interface
SERVER_FILE = "server.json"


@dataclass
class Served:
    """A server this process started: its process, the URL a person opens, and its log."""

    name: str
    process: subprocess.Popen
    url: str
    health_url: str
    log_path: Path

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the health URL answers; PrefectServerError when it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectServerError(
                    f"the {self.name} exited with code {self.process.returncode}: see {self.log_path}"
                )
            if answers(self.health_url):
                return
            time.sleep(0.2)
        raise PrefectServerError(
            f"the {self.name} did not answer within {timeout_s:.0f} s: see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGTERM to the server and the workers it started (its process group), SIGKILL after 10 s."""
        group = self.process.pid  # the leader of its own session (`_start`)
        if self.process.poll() is None:
            _signal_group(group, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait()
        _signal_group(group, signal.SIGKILL)  # workers the server left behind (MLflow's huey consumers)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(group, signum)


def answers(url: str, timeout_s: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is free
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _start(name: str, command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # A session of its own: a terminal's Ctrl-C reaches the whole foreground group, and a server that got
        # it too would stop before this process, which then took it for a crash. This process stops the
        # server's whole group (`stop`), its workers with it.
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(), start_new_session=True,
        )  # fmt: skip


def start_prefect(workspace: Workspace, port: int) -> Served:
    """`prefect server start` (API and UI) on 127.0.0.1:`port`, its database in the workspace."""
    url = f"http://{HOST}:{port}"
    # The UI asks the server where its API is: without this it would say the default port, 4200.
    env = {**os.environ, "PREFECT_HOME": str(workspace.prefect_home), "PREFECT_UI_API_URL": f"{url}/api",
           "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port)}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    command = [
        str(Path(sys.executable).parent / "prefect"),
        "server",
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    log_path = workspace.prefect_home / "server.log"
    process = _start("Prefect server", command, env, log_path)
    return Served("Prefect server", process, url, f"{url}/api/health", log_path)


def start_mlflow(workspace: Workspace, port: int) -> Served:
    """The MLflow UI on 127.0.0.1:`port` over the workspace's tracking store."""
    command = [
        str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", workspace.mlflow_uri,
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = workspace.root / "mlflow-ui.log"
    process = _start("MLflow UI", command, dict(os.environ), log_path)
    url = f"http://{HOST}:{port}"
    return Served("MLflow UI", process, url, f"{url}/health", log_path)


def record_server(workspace: Workspace, served: Served) -> Path:
    """Tell later segflow commands on this workspace where its Prefect server is (removed on stop)."""
    path = workspace.prefect_home / SERVER_FILE
    path.write_text(json.dumps({"api_url": f"{served.url}/api", "pid": served.process.pid}))
    return path


def forget_server(workspace: Workspace) -> None:
    (workspace.prefect_home / SERVER_FILE).unlink(missing_ok=True)


def find_running_server(workspace: Workspace) -> str | None:
    """The API URL of a Prefect server started for this workspace (`segflow ui` / `segflow server start`)
    that is running and answers; None otherwise."""
    try:
        recorded = json.loads((workspace.prefect_home / SERVER_FILE).read_text())
        pid, api_url = int(recorded["pid"]), str(recorded["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return api_url if answers(f"{api_url}/health") else None
