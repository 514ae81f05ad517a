"""The DuckDB warehouse: connecting, the contract tables, and the SQL file loader."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from validation.gate import ValidationSettings

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
WAREHOUSE_TABLES = (
    "events",
    "items",
    "quarantine",
    "ingest_manifest",
    "validation_runs",
    "segment_runs",
    "sources",
    "user_segments",
    "segment_recommendations",
    "segment_profiles",
    "micro_segments",
    "micro_segment_recommendations",
    "user_memberships",
    "user_recommendations",
    "user_segment_history",
    "published_export",
)


@cache
def load_sql(name: str) -> str:
    """The text of `sql/<name>.sql`, e.g. `load_sql("staging/stg_events_checked")`."""
    return (SQL_DIR / f"{name}.sql").read_text()


class WarehouseLockedError(RuntimeError):
    """Another process (not a segflow writer: the workspace lock keeps those out) has the warehouse file open."""


LOCK_WAIT_S = 3.0  # segflow's own readers hold the file for milliseconds; anything longer is someone else


def lock_holder(error: duckdb.Error) -> str:
    """Who holds the file, from DuckDB's lock error: "process 123" (it names the PID), else "another process"."""
    holder = re.search(r"\(PID (\d+)\)", str(error))
    return f"process {holder.group(1)}" if holder else "another process"


def connect_warehouse(path: Path | str, memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse file with the contract tables present. Waits up to LOCK_WAIT_S while
    another process has the file open, then a WarehouseLockedError naming it."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            con = duckdb.connect(str(path))
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() > deadline:
                raise WarehouseLockedError(
                    f"{lock_holder(error)} has the warehouse {path} open (a notebook, a DuckDB shell?): close it there and "
                    "run this again"
                ) from None
            time.sleep(0.1)
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute("set preserve_insertion_order = true")
    create_warehouse_tables(con)
    return con


def create_warehouse_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in WAREHOUSE_TABLES:
        con.execute(load_sql(f"warehouse/{table}"))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: commit when the block ends, roll back when it raises."""
    con.execute("begin transaction")
    try:
        yield
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


LATEST_QUANTILE = 0.999  # of the events' times: what "latest" means when scoring (latest_event_time)


def latest_event_time(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the warehouse's events end (None without events): what scoring measures users as of, as a retrain
    would (its fit ends there). The time by which all but 0.1% of the events had happened, not the latest one:
    one event of a skewed clock (dated today among events of 2024, which ingest accepts) moved every scored
    user's recency by years, outside anything the fit saw."""
    return con.execute(f"select quantile_disc(ts, {LATEST_QUANTILE}) from events").fetchall()[0][0]


def describe_warehouse(path: Path | str) -> dict[str, int | list[str]]:
    """Headline counts of the warehouse, read-only: `items` are those with events, `catalogue` the rows of the
    item catalogue (events may name items it lacks, and it may list items nobody touched); `sources` the names
    of the sources with events."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            """
            select
                (select count(*) from events),
                (select count(distinct user_id) from events),
                (select count(distinct item_id) from events),
                (select count(*) from items),
                (select count(*) from quarantine),
                (select coalesce(list(source order by source), []) from (select distinct source from events))
            """
        ).fetchall()[0]
    finally:
        con.close()
    return dict(zip(("events", "users", "items", "catalogue", "quarantine", "sources"), row, strict=True))


def source_settings(con: duckdb.DuckDBPyConnection) -> list[tuple[str, tuple[str, ...], ValidationSettings]]:
    """Each source with events, its event types and its validation settings (defaults for a source ingested
    before `sources` existed)."""
    from tasks.ingest.sources import DEFAULT_EVENT_TYPES

    rows = con.execute(
        """
        select stored.source, sources.event_types, sources.validation
        from (select distinct source from events) as stored
        left join sources on sources.name = stored.source
        order by stored.source
        """
    ).fetchall()
    return [
        (
            source,
            tuple(event_types) if event_types else DEFAULT_EVENT_TYPES,
            ValidationSettings.model_validate_json(validation) if validation else ValidationSettings(),
        )
        for source, event_types, validation in rows
    ]


def use_source_events(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """A temp view of one source's events (view definitions cannot take parameters: the name is quoted)."""
    literal = "'" + source.replace("'", "''") + "'"
    con.execute(
        f"create or replace temp view val_source_events as select * from events where source = {literal}"
    )
    return "val_source_events"


def read_published(path: Path | str, sql: str, params: dict | None = None) -> list[dict] | None:
    """Rows of a query over the published tables as dicts; None when nothing was published yet."""
    if not Path(path).exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        published = "select count(*) from segment_runs where is_current"
        if not has_table(con, "segment_runs") or not con.execute(published).fetchall()[0][0]:
            return None
        result = con.execute(sql, params or {})
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        con.close()


def recommend_for_user(path: Path | str, user_id: str, segment_id: int, n: int) -> list[dict]:
    """The user's segment list without the items the user has interacted with, topped up from the global list."""
    sql = load_sql("segments/user_recommendations")
    return read_published(path, sql, {"user": user_id, "segment": segment_id, "n": n}) or []


def warehouse_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The warehouse's own tables (not views, not this connection's temporary tables)."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_catalog = current_database() "
        "and table_schema = 'main' and table_type = 'BASE TABLE' order by table_name"
    ).fetchall()
    return [name for (name,) in rows]


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_name = $name", {"name": name}
    )
    return found.fetchall()[0][0] > 0


def create_table_from_frame(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    temp: bool = False,
    order_by: str | None = None,
) -> str:
    """`create or replace [temp] table <table>` holding a Polars frame's rows (handed over through Arrow)."""
    con.register("frame_to_store", frame.to_arrow())
    try:
        order = f" order by {order_by}" if order_by else ""
        kind = "temp table" if temp else "table"
        con.execute(f"create or replace {kind} {table} as select * from frame_to_store{order}")
    finally:
        con.unregister("frame_to_store")
    return table
