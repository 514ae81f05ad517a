"""Where a run keeps everything it writes, the one-writer-at-a-time lock over it, and the local Prefect server
a command's flows run against."""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Offline and quiet by default; a user's own environment wins.
DEFAULT_ENVIRONMENT = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
# Without --verbose the console gets segflow's own lines only. Prefect keeps sending every log to its API
# (the UI still shows them): only the console handler is turned down. MLflow logs to its own handler.
QUIET_ENVIRONMENT = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL", "MLFLOW_LOGGING_LEVEL": "ERROR"}
VERBOSE_ENVIRONMENT = {"PREFECT_LOGGING_LEVEL": "INFO", "SEGFLOW_VERBOSE": "1"}


class WorkspaceError(ValueError):
    """The path given as the workspace cannot be one (a file, or no workspace there for a read)."""


class WorkspaceBusyError(RuntimeError):
    """Another segflow process is writing this workspace."""


class PrefectServerError(RuntimeError):
    """The local Prefect server a command starts for its flows did not come up."""


class Workspace(BaseSettings):
    """All paths a run reads and writes, from `--workspace` or env `SEGFLOW_WORKSPACE` (default ./workspace)."""

    model_config = SettingsConfigDict(env_prefix="SEGFLOW_")

    workspace: Path = Field(default=Path("workspace"))
    # DuckDB spills to disk past this, which keeps a 10M-row ingest well under 2 GB of RAM.
    duckdb_memory_limit: str = "1GB"

    @property
    def root(self) -> Path:
        return self.workspace.expanduser().resolve()

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def mlflow_db_path(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db_path}"

    @property
    def mlartifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def sources_dir(self) -> Path:
        """Where built-in sources (the demo generator) write their files before ingest."""
        return self.root / "sources"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def create(self) -> Workspace:
        for folder in (
            self.root,
            self.mlartifacts_dir,
            self.reports_dir,
            self.exports_dir,
            self.prefect_home,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def _settings(workspace: str | Path | None) -> Workspace:
    return Workspace() if workspace is None else Workspace(workspace=Path(workspace))


def open_workspace(workspace: str | Path | None = None) -> Workspace:
    """For writing: the workspace at `workspace` (or from the environment), created on first use."""
    ws = _settings(workspace)
    if ws.root.exists() and not ws.root.is_dir():
        raise WorkspaceError(
            f"workspace {ws.root} is a file, not a folder: pass a folder with --workspace (it is created if missing)"
        )
    try:
        return ws.create()
    except OSError as error:
        raise WorkspaceError(
            f"cannot create the workspace {ws.root} ({error.strerror}): pass a folder you can write with --workspace"
        ) from None


def find_workspace(workspace: str | Path | None = None) -> Workspace:
    """For reading: the workspace at `workspace` as it is; never creates anything."""
    ws = _settings(workspace)
    if not ws.root.is_dir() or not (ws.warehouse_path.exists() or ws.exports_dir.is_dir()):
        what = "is a file" if ws.root.exists() and not ws.root.is_dir() else "holds no workspace"
        raise WorkspaceError(
            f"{ws.root} {what}: pass the folder a `segflow run` wrote with --workspace (env SEGFLOW_WORKSPACE)"
        )
    return ws


def configure_environment(workspace: Workspace, verbose: bool = False) -> None:
    """Set the offline/telemetry defaults, how much Prefect prints, and point Prefect at the workspace, before
    Prefect is imported. A user's own environment wins, except that `verbose` turns the logs up."""
    for name, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if verbose:
        os.environ.update(VERBOSE_ENVIRONMENT)
    else:
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(workspace.prefect_home))


def find_writer_pid(workspace: Workspace) -> int | None:
    """The pid of the segflow process writing the workspace now, if any; looks without taking the lock, so a
    reader never stands in a writer's way."""
    try:
        text = workspace.lock_path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a writer killed with SIGKILL leaves its pid behind
    except PermissionError:
        pass
    started = process_start_time(pid)
    try:
        written = workspace.lock_path.stat().st_mtime
    except OSError:
        return None
    if started is not None and started > written + 2:  # /proc/stat's boot time is whole seconds
        return None  # the pid was reused: this process started after the pid was written
    return pid


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in clock ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None


_held_locks: dict[Path, int] = {}


@contextmanager
def hold_workspace(workspace: Workspace) -> Iterator[None]:
    """Hold the workspace's writer lock; re-entrant within one process, an error in any other."""
    path = workspace.lock_path
    if path in _held_locks:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkspaceBusyError(
            f"workspace is busy (pid {holder}): another segflow process is writing {workspace.root}; run "
            "this again when it has finished"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held_locks[path] = fd
    try:
        yield
    finally:
        del _held_locks[path]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class PrefectServer:
    """A Prefect API server started by this process for its flows. On Linux the kernel kills it the moment
    this process dies, even by SIGKILL, so no server outlives the command that started it."""

    process: subprocess.Popen
    api_url: str
    log_path: Path

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the API answers its health check; PrefectServerError if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectServerError(
                    f"the local Prefect server exited with code {self.process.returncode}: see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrefectServerError(
            f"the local Prefect server did not answer within {timeout_s:.0f} s: see {self.log_path}, or raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that asks the kernel to SIGKILL the child when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the hook must not import
    parent_pid = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before the line above took effect
            os._exit(1)

    return hook


def start_prefect_server(workspace: Workspace) -> PrefectServer:
    """Start Prefect's API server (what Prefect itself would start as its temporary server) as a child that
    dies with this process, on a socket bound here so its address is known before it is up. Call it after
    `configure_environment` and before Prefect is imported; it does not wait: see `wait_until_ready`."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    workspace.prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = workspace.prefect_home / "server.log"
    env = {
        **os.environ,
        # The same settings Prefect gives its temporary server: no UI, the ephemeral profile of services.
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
        "--fd", str(listener.fileno()), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    try:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),), preexec_fn=_die_with_parent(),
            )  # fmt: skip
    finally:
        listener.close()
    server = PrefectServer(process, f"http://127.0.0.1:{port}/api", log_path)
    atexit.register(server.stop)  # registered before Prefect's own exit hooks, so it runs after them
    return server
