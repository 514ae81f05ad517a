"""A writer that finds the warehouse file held by another process (a notebook, a DuckDB shell, a reader of
segflow's own for a moment): it waits a moment, then says who holds it in one line, not DuckDB's lock text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.warehouse import WarehouseLockedError, connect_warehouse

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """A process with the warehouse open read-only for `seconds`, once it has printed that it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "holding"
    return process


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    connect_warehouse(path).close()
    return path


def test_a_file_held_by_another_process_is_one_line_naming_it(warehouse):
    holder = hold(warehouse, 30)
    try:
        with pytest.raises(WarehouseLockedError) as raised:
            connect_warehouse(warehouse)
        assert str(raised.value) == (
            f"process {holder.pid} has the warehouse {warehouse} open (a notebook, a DuckDB shell?): close it "
            "there and run this again"
        )
    finally:
        holder.kill()
        holder.wait()


def test_a_reader_that_lets_go_within_the_wait_is_waited_for(warehouse):
    holder = hold(warehouse, 0.5)
    con = connect_warehouse(warehouse)  # waits for it, instead of failing at once
    try:
        assert con.execute("select count(*) from segment_runs").fetchall() == [(0,)]
    finally:
        con.close()
        holder.wait()
