"""The Parquet lake: every ingested event lands once under lake/events/event_date=YYYY-MM-DD/, the same rows as
the warehouse's `events` (and as the manifest counts), readable by DuckDB and Spark; a re-ingest adds nothing
and a batch a crash left out comes back at the next ingest."""

from __future__ import annotations

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
        f"select {COLUMNS}, event_date from read_parquet('{files}', hive_partitioning = true) order by all"
    ).fetchall()


def warehouse_rows(workspace: Path) -> list[tuple]:
    return query(workspace, f"select {COLUMNS}, cast(ts as date) from events order by all")


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
    assert sorted(p.name for p in lake.iterdir()) == [
        "_batches", "event_date=1999-12-31", "event_date=2024-03-01", "event_date=2024-03-02",
        "event_date=2024-03-05",
    ]  # fmt: skip
    files = sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet"))

    # A re-ingest adds nothing; a batch whose files a crash lost comes back at the next ingest.
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet")) == files
    for path in lake.glob("event_date=2024-03-0[12]/*.parquet"):
        path.unlink()
    ingest_events(source=str(source / "source.toml"), workspace=str(workspace))
    assert sorted(p.relative_to(lake) for p in lake.glob("*/*.parquet")) == files
    assert lake_rows(workspace) == rows

    from tasks.engine.spark import spark_session

    spark = spark_session(spark_master)
    read = spark.read.parquet(str(lake)).select("user_id", "item_id", "event_type", "value", "event_date")
    expected = sorted((r[0], r[1], r[2], r[4], r[13]) for r in rows)
    assert sorted(tuple(r) for r in read.collect()) == expected
