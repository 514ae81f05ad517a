"""The DuckDB engine: an in-memory database of this process, times in UTC."""

from __future__ import annotations

import pyarrow as pa

from tasks.features.events import memory_connection
from tasks.warehouse import load_sql, quote_ident


class DuckDBEngine:
    name = "duckdb"

    def __init__(self) -> None:
        self._con = memory_connection()

    def register(self, table: str, data: pa.Table) -> None:
        self._con.register(table, data)

    def create(self, table: str, sql_name: str, params: dict | None = None) -> None:
        self._con.execute(f"create temp table {quote_ident(table)} as {load_sql(sql_name)}", params or {})

    def fetch(self, table: str) -> pa.Table:
        return self._con.sql(f"select * from {quote_ident(table)} order by all nulls last").to_arrow_table()

    def close(self) -> None:
        self._con.close()
