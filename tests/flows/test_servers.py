"""`segflow server start` and `segflow ui` as a person runs them: servers on 127.0.0.1 only, their URLs
printed, every other segflow command on the workspace using that Prefect server instead of starting its own,
and a clean stop on Ctrl-C (SIGINT) or `kill` (SIGTERM) that leaves nothing running."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

SEGFLOW = str(Path(sys.executable).parent / "segflow")
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nothing_listens_on(port: int) -> bool:
    """Bind as a server would (connections closing in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def page(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode(errors="replace")


def browse(url: str, screenshot: Path) -> str:
    """The page's DOM once its scripts ran, in headless Chromium, and a screenshot of it."""
    flags = [
        CHROMIUM,
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,800",
        "--virtual-time-budget=10000",
    ]
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=90, check=True)
    return subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True
    ).stdout


def clean_env() -> dict[str, str]:
    """This environment without a Prefect server of its own; servers may take up to 4 minutes to answer (the
    default 90 s ran out once on 2 cores while another test process trained on both)."""
    # Without PYTHONUNBUFFERED, as under nohup or a service: the addresses must still come out at once.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "PREFECT_HOME", "PYTHONUNBUFFERED")
    }
    return env | {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}


def start(args: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """Start a serving command and read its lines up to the one that says what uses it."""
    process = subprocess.Popen(
        [SEGFLOW, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def read_until_serving() -> None:  # in a thread, so a command that prints nothing fails, not hangs
        for line in process.stdout:
            lines.put(line)
            if line.startswith("segflow commands on"):
                return
        lines.put(None)

    threading.Thread(target=read_until_serving, daemon=True).start()
    shown = []
    while (line := lines.get(timeout=300)) is not None:  # queue.Empty: nothing printed (stdout held back?)
        shown.append(line.rstrip())
        if line.startswith("segflow commands on"):
            return process, shown
    raise AssertionError(f"exit {process.wait()} before serving: {shown} {process.stderr.read()}")


def stop(process: subprocess.Popen, signum: int) -> int:
    """SIGINT as a terminal's Ctrl-C sends it and SIGHUP as a closed terminal does, to the whole process group
    (the command is its leader); SIGTERM as `kill` does, to the command alone."""
    if signum in (signal.SIGINT, signal.SIGHUP):
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    return process.wait(30)


def test_server_start_serves_the_workspace_and_commands_use_it(tmp_path):
    workspace, port = tmp_path / "ws", free_port()
    process, shown = start(["server", "start", "--workspace", str(workspace), "--port", str(port)])
    try:
        assert (
            shown[0]
            == f"Prefect server: http://127.0.0.1:{port}  (log {workspace / 'prefect' / 'server.log'})"
        ), shown
        assert page(f"http://127.0.0.1:{port}/api/health")[0] == 200
        done = subprocess.run(
            [SEGFLOW, "--verbose", "ingest", "--source", "demo:50", "--workspace", str(workspace)],
            capture_output=True, text=True, env=clean_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "a local server for this command" not in done.stderr  # it used the running one
        again = subprocess.run([SEGFLOW, "ingest", "--source", "demo:50", "--workspace", str(workspace)], capture_output=True, text=True, env=clean_env())  # fmt: skip
        assert again.returncode == 0 and "0 ingested, 2 skipped" in again.stdout
    finally:
        code = stop(process, signal.SIGINT)
    assert code == 0 and "stopping ..." in process.stdout.read()
    assert not (workspace / "prefect" / "server.json").exists()
    assert nothing_listens_on(port)  # nothing left running


def test_ui_serves_prefect_and_mlflow_on_localhost_and_a_closed_terminal_stops_both(tmp_path):
    """Closing the terminal (SIGHUP) stops both servers and MLflow's workers (it left them running once the
    servers had sessions of their own); `kill` (SIGTERM) is the same handler."""
    workspace, prefect_port, mlflow_port = tmp_path / "ws", free_port(), free_port()
    process, shown = start(
        [
            "ui",
            "--workspace",
            str(workspace),
            "--prefect-port",
            str(prefect_port),
            "--mlflow-port",
            str(mlflow_port),
        ]
    )
    try:
        assert [line.split("  (log")[0] for line in shown[:2]] == [
            f"Prefect server: http://127.0.0.1:{prefect_port}", f"MLflow UI: http://127.0.0.1:{mlflow_port}",
        ]  # fmt: skip
        status, html = page(f"http://127.0.0.1:{prefect_port}/")
        assert status == 200 and "<html" in html.lower()
        status, html = page(f"http://127.0.0.1:{mlflow_port}/")
        assert status == 200 and "mlflow" in html.lower()
        # The Prefect UI asks its server where the API is: the port it runs on, not Prefect's default.
        assert (
            f'"api_url":"http://127.0.0.1:{prefect_port}/api"'
            in page(f"http://127.0.0.1:{prefect_port}/ui-settings")[1]
        )
        if CHROMIUM:  # a real browser renders both pages (Debian: apt-get install chromium-headless-shell)
            for name, port, text in (
                ("prefect", prefect_port, "Dashboard"),
                ("mlflow", mlflow_port, "Experiments"),
            ):
                assert text in browse(f"http://127.0.0.1:{port}/", tmp_path / f"{name}.png")
                assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        busy = subprocess.run(
            [SEGFLOW, "ui", "--workspace", str(workspace), "--prefect-port", str(free_port()), "--mlflow-port", str(free_port())],
            capture_output=True, text=True, env=clean_env(),
        )  # fmt: skip
        assert busy.returncode == 1
        assert busy.stderr.strip() == (
            f"error: a Prefect server for {workspace} is already running at http://127.0.0.1:{prefect_port}/api: "
            "use it, or stop it first"
        )
    finally:
        code = stop(process, signal.SIGHUP)
    assert code == 0
    assert nothing_listens_on(prefect_port) and nothing_listens_on(mlflow_port)


def test_a_taken_port_is_one_line_naming_the_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [SEGFLOW, "server", "start", "--workspace", str(tmp_path / "ws"), "--port", str(port)],
            capture_output=True, text=True, env=clean_env(),
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: port {port} on 127.0.0.1 is taken: pick another with --port"
