"""The workspace: created for writing, only found for reading, and its writer seen without taking its lock."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tasks.workspace import (
    QUIET_ENVIRONMENT,
    WorkspaceError,
    configure_environment,
    find_workspace,
    find_writer_pid,
    hold_workspace,
    open_workspace,
)


def test_a_workspace_for_writing_is_created_with_its_folders(tmp_path):
    ws = open_workspace(tmp_path / "new" / "workspace")
    assert all(p.is_dir() for p in (ws.root, ws.exports_dir, ws.reports_dir, ws.prefect_home))


def test_a_file_is_no_workspace_for_writing_or_reading(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(WorkspaceError, match=f"workspace {path} is a file, not a folder"):
        open_workspace(path)
    with pytest.raises(WorkspaceError, match=f"{path} is a file: pass the folder"):
        find_workspace(path)
    assert path.read_text() == "x"


def test_reading_a_missing_or_empty_folder_creates_nothing(tmp_path):
    with pytest.raises(WorkspaceError, match=f"{tmp_path / 'nope'} holds no workspace"):
        find_workspace(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceError, match="holds no workspace"):
        find_workspace(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_the_writer_pid_is_seen_while_the_lock_is_held_and_not_after(tmp_path):
    ws = open_workspace(tmp_path / "workspace")
    assert find_writer_pid(ws) is None
    with hold_workspace(ws):
        assert find_writer_pid(ws) == os.getpid()
    assert find_writer_pid(ws) is None


def test_a_pid_left_by_a_killed_writer_and_reused_since_is_no_writer(tmp_path):
    """Helper 38: after a SIGKILL the writer's pid stays in .lock, and any live process that later got that
    pid was taken for the writer (`segflow history` refused until the next run)."""
    ws = open_workspace(tmp_path / "workspace")
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        ws.lock_path.write_text(str(stranger.pid))
        os.utime(ws.lock_path, (time.time() - 3600, time.time() - 3600))  # written an hour before it started
        assert find_writer_pid(ws) is None
        os.utime(ws.lock_path)  # written now: it may be the writer (a SIGKILL leaves no other trace)
        assert find_writer_pid(ws) == stranger.pid
    finally:
        stranger.kill()
        stranger.wait()


def test_quiet_unless_verbose_and_the_users_environment_wins(tmp_path, monkeypatch):
    ws = open_workspace(tmp_path / "workspace")
    for name in (*QUIET_ENVIRONMENT, "PREFECT_LOGGING_LEVEL", "SEGFLOW_VERBOSE"):
        monkeypatch.setenv(name, "")  # recorded, so what configure_environment sets is undone after the test
        monkeypatch.delenv(name)
    configure_environment(ws)
    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "CRITICAL"
    assert "SEGFLOW_VERBOSE" not in os.environ
    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")
    configure_environment(ws, verbose=True)
    assert os.environ["SEGFLOW_VERBOSE"] == "1" and os.environ["PREFECT_LOGGING_LEVEL"] == "INFO"
    assert "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in os.environ
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")
    configure_environment(ws)
    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "ERROR"
