"""Where the feature SQL runs: one small interface, `SqlEngine`, with a DuckDB and a Spark implementation.

An engine holds named tables for one computation: `register` hands it an Arrow table, `create` makes a table
from a file of sql/ (plain DuckDB SQL, transpiled for Spark by SQLGlot), `fetch` hands a table back as Arrow,
in the same order on every engine.
DuckDB (in memory, in this process) is the default; Spark runs the same files on a local or remote session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

import pyarrow as pa

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")


class SqlEngine(Protocol):
    name: EngineName

    def register(self, table: str, data: pa.Table) -> None:
        """Make `data` readable as `table`."""

    def create(self, table: str, sql_name: str, params: dict | None = None) -> None:
        """Create `table` from `sql/<sql_name>.sql` with its bound parameters."""

    def fetch(self, table: str) -> pa.Table:
        """`table`'s rows ordered by all of their columns, ascending, nulls last (every engine hands back the
        same rows in the same order; the engine sorts, and can spill); timestamps without a zone, in UTC."""

    def close(self) -> None: ...


@contextmanager
def open_engine(name: EngineName = "duckdb", spark_master: str | None = None) -> Iterator[SqlEngine]:
    """An engine for one computation, closed when the block ends. `spark_master`: a Spark master URL
    (`local[*]`, `spark://host:7077`) or a Spark Connect URL (`sc://host:15002`); without it, env
    `SPARK_REMOTE` when set, else local Spark."""
    if name == "duckdb":
        from tasks.engine.duck import DuckDBEngine

        engine: SqlEngine = DuckDBEngine()
    elif name == "spark":
        from tasks.engine.spark import SparkEngine, spark_session

        engine = SparkEngine(spark_session(spark_master))
    else:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    try:
        yield engine
    finally:
        engine.close()
