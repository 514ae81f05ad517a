"""The Parquet lake: every ingested event lands once under lake/events/event_month=YYYY-MM/, the same rows as
the warehouse's `events` (and as the manifest counts), readable by DuckDB and Spark; a re-ingest adds nothing,
a batch a crash left out comes back at the next ingest, and a lake in the earlier layout (event_date=, by day)
is rewritten in this one."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest_events
from tasks.ingest.lake import lake_events_dir
from tests.helpers import query

pytestmark = pytest.mark.usefixtures("prefect_harness")

HEADER = "user,item,kind,ts,value\n"
FIRST = [
    'ü-1,"i\'1",view,2024-03-01T23:30:00+09:00,\n',  # 14:30 UTC on the 1st
    'ü-1,"i\'1",purchase,2024-03-01T23:30:00-05:00,9.5\n',  # 04:30 UTC on the 2nd
    '用户 2,"say ""hi""",view,2024-03-02 00:00:00,\n',
    "u3,i2,view,2024-03-05 12:00:00,\n",
]
SECOND = [
    "u3,i2,view,2024-03-05 12:00:00,\n",  # a duplicate of the first file's row: not inserted again
    "u4,i9,rate,1999-12-31 23:59:59,4.0\n",
]
SPEC = """
name = "shop"
[events]
path = "*.csv"
[events.columns]
user_id = "user"
item_id = "item"
event_type = "kind"
ts = "ts"
value = "value"
"""
COLUMNS = "user_id, item_id, event_type, ts, value, quantity, session_id, event_id, item_title, item_category, source, batch_id, ingested_at"


def lake_rows(workspace: Path) -> list[tuple]:
    files = str(lake_events_dir(workspace.resolve()) / "*" / "*.parquet")
    return duckdb.execute(
        f"select {COLUMNS}, event_month from read_parquet('{files}', hive_partitioning = true) order by all"
    ).fetchall()


def warehouse_rows(workspace: Path) -> list[tuple]:
    return query(workspace, f"select {COLUMNS}, strftime(ts, '%Y-%m') from events order by all")


def test_the_lake_holds_every_event_once_and_spark_reads_it(tmp_path, workspace, spark_master):
    source = tmp_path / "src"
    source.mkdir()
    (source / "source.toml").write_text(SPEC)
    (source / "a.csv").write_text(HEADER + "".join(FIRST))
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    (source / "b.csv").write_text(HEADER + "".join(SECOND))
    report = ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert [(f.status, f.rows_inserted) for f in report.files] == [("skipped", 0), ("ingested", 1)]

    rows = lake_rows(workspace)
    assert rows == warehouse_rows(workspace)
    assert len(rows) == 5 == query(workspace, "select sum(rows_inserted) from ingest_manifest")[0][0]
    lake = lake_events_dir(workspace.resolve())
    # By UTC month: the +09:00 view of March 1st is still March; 1999-12-31 23:59:59 stays in December.
    assert sorted(p.name for p in lake.iterdir()) == [
        "_batches",
        "event_month=1999-12",
        "event_month=2024-03",
    ]
    files = sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet"))

    # A re-ingest adds nothing; a batch whose files a crash lost comes back at the next ingest.
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet")) == files
    for path in lake.glob("event_month=2024-03/*.parquet"):
        path.unlink()
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet")) == files
    assert lake_rows(workspace) == rows

    from tasks.engine.spark import spark_session

    spark = spark_session(spark_master)
    read = spark.read.parquet(str(lake)).select("user_id", "item_id", "event_type", "value", "event_month")
    expected = sorted((r[0], r[1], r[2], r[4], r[13]) for r in rows)
    assert sorted(tuple(r) for r in read.collect()) == expected


def test_a_lake_in_the_daily_layout_is_rewritten_by_month(tmp_path, workspace):
    """Workspaces from before the monthly layout hold event_date=YYYY-MM-DD folders: the next ingest rewrites
    their batches by month and removes the old files and folders, so hive readers see one partition column."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "source.toml").write_text(SPEC)
    (source / "a.csv").write_text(HEADER + "".join(FIRST))
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    rows = lake_rows(workspace)
    lake = lake_events_dir(workspace.resolve())
    for record in (lake / "_batches").glob("*.json"):  # the batch as the daily layout left it
        batch = json.loads(record.read_text())
        names = []
        for name in batch["files"]:
            old = lake / "event_date=2024-03-01" / Path(name).name
            old.parent.mkdir(exist_ok=True)
            (lake / name).rename(old)
            names.append(f"{old.parent.name}/{old.name}")
        record.write_text(json.dumps(batch | {"files": names}))
    (lake / "event_month=2024-03").rmdir()
    assert sorted(p.name for p in lake.iterdir()) == ["_batches", "event_date=2024-03-01"]

    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert sorted(p.name for p in lake.iterdir()) == ["_batches", "event_month=2024-03"]
    assert lake_rows(workspace) == rows
