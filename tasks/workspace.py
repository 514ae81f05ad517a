"""Where a run keeps everything it writes, and the one-writer-at-a-time lock over it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


class WorkspaceBusyError(RuntimeError):
    """Another segflow process is writing this workspace."""


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


def open_workspace(workspace: str | Path | None = None) -> Workspace:
    """The workspace at `workspace` (or from the environment), created on first use."""
    settings = Workspace() if workspace is None else Workspace(workspace=Path(workspace))
    return settings.create()


def configure_environment(workspace: Workspace) -> None:
    """Set the offline/telemetry defaults and point Prefect at the workspace, before Prefect is imported."""
    for name, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(workspace.prefect_home))


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
            f"workspace is busy (pid {holder}): another segflow process is writing {workspace.root}"
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
