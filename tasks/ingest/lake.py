"""The Parquet lake: every ingested event also lands as Parquet under `<workspace>/lake/events/`, partitioned by
event month (UTC), one set of files per ingest batch:

    lake/events/event_month=2024-03/batch-<batch_id>-0.parquet

DuckDB (`read_parquet('lake/events/**/*.parquet', hive_partitioning = true)`) and Spark
(`spark.read.parquet('lake/events')`) read the same events as the warehouse's `events` table. A batch is
written after its insert commits: into a staging folder first, then each file renamed into place (a reader
never sees half a file), then its record `_batches/<batch_id>.json` (its files and rows), which says the batch
is whole. Writing a batch again replaces its files, so nothing is ever there twice. `sync_lake` (run at the
start of every ingest) rewrites every batch of the warehouse without a record or with a file missing (a crash,
a workspace from before the lake or from before its layout: `event_date=` folders, by day) and removes the files
of batches the warehouse no longer has. Spark and DuckDB's hive reading skip the `_batches` folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import duckdb

from tasks.warehouse import load_sql

BATCH_FILE = re.compile(r"^batch-(?P<batch_id>.+)-\d+\.parquet$")
PARTITION = "event_month"  # the column (sql/warehouse/lake_events.sql) and folder prefix of a partition
ANY_PARTITION = "event_*=*"  # this layout's folders and those of earlier ones (event_date=, by day)


def lake_events_dir(workspace_root: Path | str) -> Path:
    """Where a workspace's events lake is."""
    return Path(workspace_root) / "lake" / "events"


def lake_batches(lake_dir: Path) -> set[str]:
    """The batch ids with files in the lake."""
    return {
        m["batch_id"]
        for path in lake_dir.glob(f"{ANY_PARTITION}/*.parquet")
        if (m := BATCH_FILE.match(path.name))
    }


def _record_path(lake_dir: Path, batch_id: str) -> Path:
    return lake_dir / "_batches" / f"{batch_id}.json"


def is_whole(lake_dir: Path, batch_id: str) -> bool:
    """The batch's record is there and so is every file it lists, each in this layout's partitions."""
    record = _record_path(lake_dir, batch_id)
    if not record.exists():
        return False
    return all(
        name.startswith(f"{PARTITION}=") and (lake_dir / name).exists()
        for name in json.loads(record.read_text())["files"]
    )


def _batch_files(lake_dir: Path, batch_id: str) -> list[Path]:
    return [
        path
        for path in lake_dir.glob(f"{ANY_PARTITION}/*.parquet")
        if (m := BATCH_FILE.match(path.name)) and m["batch_id"] == batch_id
    ]


def write_lake_batch(con: duckdb.DuckDBPyConnection, lake_dir: Path, batch_id: str) -> int:
    """Write one batch's events (from the warehouse) to the lake, replacing any files it had; the rows written."""
    staging = lake_dir.parent / "_staging" / batch_id
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    # DuckDB writes the partitions itself (one file per day, rows streamed); paths cannot be bound parameters.
    copy = (
        f"copy ({load_sql('warehouse/lake_events')}) to {_literal(str(staging))} "
        f"(format parquet, partition_by ({PARTITION}), filename_pattern {_literal(f'batch-{batch_id}-{{i}}')})"
    )
    con.execute("set enable_progress_bar = false")  # a long copy would draw DuckDB's bar over the CLI's
    try:
        n_rows = con.execute(copy, {"batch_id": batch_id}).fetchall()[0][0]
    finally:
        con.execute("reset enable_progress_bar")
    _remove_batch(lake_dir, batch_id)
    names = []
    for path in sorted(staging.glob(f"{PARTITION}=*/*.parquet")):
        names.append(f"{path.parent.name}/{path.name}")
        (lake_dir / path.parent.name).mkdir(parents=True, exist_ok=True)
        os.replace(path, lake_dir / names[-1])
    record = _record_path(lake_dir, batch_id)
    record.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)  # a batch of no rows has no partition, but a record
    (staging / "record.json").write_text(json.dumps({"batch_id": batch_id, "rows": n_rows, "files": names}))
    os.replace(staging / "record.json", record)
    shutil.rmtree(staging, ignore_errors=True)
    return n_rows


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _remove_batch(lake_dir: Path, batch_id: str) -> None:
    _record_path(lake_dir, batch_id).unlink(missing_ok=True)
    for path in _batch_files(lake_dir, batch_id):
        path.unlink()
        with contextlib.suppress(OSError):  # the partition's last file: its folder goes too
            path.parent.rmdir()


def sync_lake(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> tuple[int, int]:
    """Bring the lake in line with the warehouse: write the batches it lacks or has in part, remove those the
    warehouse lacks. Returns (batches written, batches removed)."""
    stored = {batch_id for (batch_id,) in con.execute("select distinct batch_id from events").fetchall()}
    recorded = {path.stem for path in (lake_dir / "_batches").glob("*.json")}
    landed = lake_batches(lake_dir) if lake_dir.exists() else set()
    missing = sorted(b for b in stored if not is_whole(lake_dir, b))
    for batch_id in missing:
        write_lake_batch(con, lake_dir, batch_id)
    gone = sorted((landed | recorded) - stored)
    for batch_id in gone:
        _remove_batch(lake_dir, batch_id)
    shutil.rmtree(lake_dir.parent / "_staging", ignore_errors=True)
    return len(missing), len(gone)
