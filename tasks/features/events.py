"""Events as models read them: a pyarrow table of the canonical columns, from a warehouse or any frame."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

# The columns a segmenter reads, with their types; user_id, item_id, event_type and ts are required.
EVENT_COLUMNS = {
    "user_id": "varchar",
    "item_id": "varchar",
    "event_type": "varchar",
    "ts": "timestamp",
    "value": "double",
    "quantity": "double",
    "session_id": "varchar",
    "item_category": "varchar",
    "item_title": "varchar",
    "timezone": "varchar",  # the user's clock at the event (tasks/features/user_features.with_local_times)
}
REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "ts")


def memory_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one computation: nothing shared, times in UTC."""
    con = duckdb.connect(":memory:")
    con.execute("set TimeZone = 'UTC'")
    return con


def as_events_table(frame) -> pa.Table:
    """Any frame of events (pandas, Polars, Arrow) as a pyarrow table of EVENT_COLUMNS, typed; zoned times in UTC."""
    con = memory_connection()
    try:
        con.register("events_input", frame)
        present = {name for name, *_ in con.execute("describe events_input").fetchall()}
        missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in present]
        if missing:
            raise ValueError(
                f"events need the columns {', '.join(missing)} (given: {', '.join(sorted(present))})"
            )
        selects = [
            f'cast("{name}" as {dtype}) as {name}' if name in present else f"null::{dtype} as {name}"
            for name, dtype in EVENT_COLUMNS.items()
        ]
        return con.sql(f"select {', '.join(selects)} from events_input").to_arrow_table()
    finally:
        con.close()


def read_events(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every event of the warehouse, in EVENT_COLUMNS, ordered (so a fit sees the same rows in the same order)."""
    columns = ", ".join(EVENT_COLUMNS)
    return con.sql(f"select {columns} from events order by user_id, ts, item_id, event_type").to_arrow_table()


def read_items(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The catalogue: `item_id, title, category, text`."""
    return con.sql("select item_id, title, category, text from items order by item_id").to_arrow_table()


def read_warehouse_events(warehouse_path: Path | str, memory_limit: str = "1GB") -> tuple[pa.Table, pa.Table]:
    """The events and the item catalogue of a warehouse file."""
    from tasks.warehouse import connect_warehouse

    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        return read_events(con), read_items(con)
    finally:
        con.close()
