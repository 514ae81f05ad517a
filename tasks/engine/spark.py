"""The Spark engine: the feature SQL, transpiled from DuckDB to Spark SQL by SQLGlot, on a Spark session.

The session is made on first use and reused by the process: local[*] unless a master URL is given, or a Spark
Connect session for an `sc://` URL (or env SPARK_REMOTE). The UI is off and the session time zone is UTC, so
timestamps without a zone mean what they mean in DuckDB.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pyarrow as pa

from tasks.warehouse import load_sql

try:
    import sqlglot
    from sqlglot.errors import ErrorLevel
except ImportError as error:  # the spark extra is not installed
    raise ImportError(
        "the spark engine needs pyspark and sqlglot: pip install -e '.[spark]' (and Java 17 or later)"
    ) from error

_SESSIONS: dict[str, object] = {}
_SESSIONS_LOCK = threading.Lock()  # tasks in threads may ask for the session at once
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")  # the JVM's logs: errors only
# Small local jobs: Spark's 200 shuffle partitions would be 200 tasks per join on a laptop.
LOCAL_SHUFFLE_PARTITIONS = "8"


def spark_session(master: str | None = None):
    """The process's Spark session for `master` (default: env SPARK_REMOTE, else local[*]), made once."""
    url = master or os.environ.get("SPARK_REMOTE") or "local[*]"
    with _SESSIONS_LOCK:
        if url not in _SESSIONS:
            _SESSIONS[url] = _new_session(url)
    return _SESSIONS[url]


def _new_session(url: str):
    """A Spark session for `url`: a master URL, or `sc://` for Spark Connect."""
    with _quiet():
        from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("segflow")
    if url.startswith("sc://"):
        builder = builder.remote(url)
    else:
        builder = builder.master(url).config("spark.ui.enabled", "false")
        builder = builder.config("spark.ui.showConsoleProgress", "false")
        quiet = f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}"
        builder = builder.config("spark.driver.extraJavaOptions", f"-Duser.timezone=UTC {quiet}")
        builder = builder.config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        if url.startswith("local"):
            builder = builder.config("spark.sql.shuffle.partitions", LOCAL_SHUFFLE_PARTITIONS)
    with _quiet():
        session = builder.config("spark.sql.session.timeZone", "UTC").getOrCreate()
    if not url.startswith("sc://"):
        session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def _quiet() -> Iterator[None]:
    """PySpark warns that it does not fully support pandas 3; the engine hands it Arrow only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        yield


@cache
def to_spark_sql(duckdb_sql: str) -> str:
    """DuckDB SQL as Spark SQL (`$name` parameters become `:name`); what SQLGlot cannot carry over is an error,
    not a silently different query."""
    return sqlglot.transpile(duckdb_sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)[0]


def _for_spark(data: pa.Table) -> pa.Table:
    """Arrow types Spark reads: plain strings, microsecond timestamps."""
    fields = []
    for field in data.schema:
        if pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            field = field.with_type(pa.string())
        elif pa.types.is_timestamp(field.type):
            field = field.with_type(pa.timestamp("us", tz=field.type.tz))
        elif pa.types.is_null(field.type):
            field = field.with_type(pa.string())
        fields.append(field)
    return data.cast(pa.schema(fields))


def _from_spark(data: pa.Table) -> pa.Table:
    """As DuckDB hands tables over: timestamps without a zone (Spark's come back zoned, in UTC), every column
    nullable."""
    fields = [
        (field.with_type(pa.timestamp("us")) if pa.types.is_timestamp(field.type) else field).with_nullable(
            True
        )
        for field in data.schema
    ]
    return data.cast(pa.schema(fields))


class SparkEngine:
    name = "spark"

    def __init__(self, session) -> None:
        # A session of its own (classic Spark): its temp views are invisible to any other computation.
        try:
            self._spark = session.newSession()
        except Exception:  # Spark Connect has no newSession: views are dropped on close instead
            self._spark = session
        self._views: list[str] = []

    def _keep(self, table: str, frame) -> None:
        frame.createOrReplaceTempView(table)
        self._views.append(table)

    def register(self, table: str, data: pa.Table) -> None:
        data = _for_spark(data)
        with _quiet():
            self._keep(table, self._spark.createDataFrame(data, schema=_spark_schema(data)))

    def create(self, table: str, sql_name: str, params: dict | None = None) -> None:
        frame = self._spark.sql(to_spark_sql(load_sql(sql_name)), args=params or None)
        # Materialised once: later files read a table several times, and must all see the same rows.
        self._keep(table, frame.localCheckpoint(eager=True))

    def fetch(self, table: str) -> pa.Table:
        with _quiet():
            frame = self._spark.table(table)
            return _from_spark(frame.orderBy(*[frame[c].asc_nulls_last() for c in frame.columns]).toArrow())

    def close(self) -> None:
        for view in self._views:
            self._spark.catalog.dropTempView(view)
        self._views = []


def _spark_schema(data: pa.Table):
    """The Spark schema of an Arrow table (given explicitly, so an empty table keeps its columns' types)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(data.schema)
