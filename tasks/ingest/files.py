"""Ingest: raw files into the warehouse, each row inserted once, counted as a duplicate, or quarantined.

A file goes through three steps, all in DuckDB so nothing large is held in Python:
  stage      read it as text (CSV/TSV/JSONL) or as is (Parquet); malformed lines become rejects;
  map        evaluate the source's column expressions into canonical columns;
  check      give every row that cannot be inserted a reason (sql/staging/stg_*_rejected.sql) and find the
             duplicates of earlier rows or of the warehouse (sql/staging/stg_*_duplicates.sql); what is
             left is the batch, the view `stg_*_new`;
then the flow validates the batch and runs quarantine_rows, insert_rows and record_manifest in one transaction.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tasks.ingest.sources import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    Feed,
    SourceSpec,
    SourceSpecError,
)
from tasks.warehouse import load_sql, quote_ident

NUMERIC_CANONICALS = {"value", "quantity", "price"}
# A column used inside an expression takes the type that at least this share of its values have;
# the rest of its rows are quarantined with a reason naming the column.
TYPE_INFERENCE_SHARE = 0.9


class IngestFailedError(RuntimeError):
    """A file was rejected (too many bad rows) or failed validation; nothing of it was inserted."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class SourceFile:
    """One file of one feed of a source."""

    source: str
    feed: Feed
    path: Path
    format: str

    @property
    def kind(self) -> str:
        return self.feed.kind


@dataclass
class FileOutcome:
    """What ingest did with one file: the manifest row, plus the top reasons when rows were bad."""

    source: str
    file: str
    kind: str
    sha256: str
    batch_id: str
    status: str = "staged"
    rows_read: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    message: str | None = None
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def discover_files(spec: SourceSpec) -> list[SourceFile]:
    """Every file of the source, catalogue feeds first so events can be checked against items."""
    found = []
    for feed in [*spec.items, *spec.events]:
        for path in feed.files():
            found.append(
                SourceFile(source=spec.name, feed=feed, path=path.resolve(), format=feed.format_for(path))
            )
    return found


def record_source(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    """Keep the source's event types and validation settings in `sources` (unchanged settings: no write)."""
    con.execute(
        load_sql("warehouse/upsert_source"),
        {
            "name": spec.name,
            "event_types": list(spec.event_types),
            "validation": spec.validation.model_dump_json(),
            "updated_at": datetime.now(UTC).replace(tzinfo=None),
        },
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def new_batch_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def is_already_ingested(con: duckdb.DuckDBPyConnection, kind: str, sha256: str) -> bool:
    """True when a file with this content was ingested before (under any name or source)."""
    found = con.execute(
        "select count(*) from ingest_manifest where sha256 = $sha and kind = $kind and status = 'ingested'",
        {"sha": sha256, "kind": kind},
    ).fetchall()
    return found[0][0] > 0


# ---------------------------------------------------------------------------------------------- stage


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115 - the wrapper owns it
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


def _delimiter(file: SourceFile) -> str:
    return file.feed.delimiter or ("\t" if file.format == "tsv" else ",")


def _header(file: SourceFile) -> list[str]:
    if file.feed.file_columns:
        return list(file.feed.file_columns)
    delimiter = _delimiter(file)
    with _open_text(file.path, file.feed.encoding) as handle:
        first = handle.readline().rstrip("\r\n")
    if len(delimiter) == 1:
        names = next(csv.reader([first], delimiter=delimiter), [])
    else:
        names = first.split(delimiter)
    names = [name.strip().lstrip("\ufeff") for name in names]
    if not file.feed.header:
        return [f"column{i}" for i in range(len(names))]
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise SourceSpecError(
            f"{file.path.name}: the header line has empty or repeated column names: {first!r}"
        )
    return names


def stage_file(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """Load the file into `stg_raw` (its own columns plus `_row`, the 1-based data row) and its malformed
    lines into `stg_rejects(_row, reason, record)`."""
    drop_staging(con)
    path = str(file.path)
    if file.format == "parquet":
        con.execute("create temp table stg_file as select * from read_parquet($path)", {"path": path})
        con.execute("create temp view stg_raw as select rowid + 1 as _row, * from stg_file")
        con.execute("create temp table stg_rejects (_row bigint, reason varchar, record varchar)")
    elif file.format == "jsonl":
        _stage_jsonl(con, file)
    else:
        _stage_csv(con, file)


def _stage_csv(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    names = _header(file)
    columns = "{" + ", ".join(f"'{n.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for n in names) + "}"
    quote = "" if file.feed.delimiter and len(file.feed.delimiter) > 1 else '"'
    con.execute(
        f"""
        create temp table stg_file as
        select * from read_csv(
            $path, columns = {columns}, header = $header, auto_detect = false, delim = $delim,
            quote = $quote, escape = $quote, encoding = $encoding, ignore_errors = true,
            store_rejects = true, rejects_table = 'stg_reject_errors', rejects_scan = 'stg_reject_scans'
        )
        """,
        {
            "path": str(file.path),
            "header": file.feed.header,
            "delim": _delimiter(file),
            "quote": quote,
            "encoding": file.feed.encoding,
        },
    )
    offset = 1 if file.feed.header else 0
    con.execute(
        f"""
        create temp table stg_rejects as
        select
            line - {offset} as _row,
            'malformed line: ' || lower(arg_min(error_type, coalesce(column_idx, 0)))
                || ' (' || arg_min(error_message, coalesce(column_idx, 0)) || ')' as reason,
            any_value(csv_line) as record,
        from stg_reject_errors
        group by line
        order by line
        """
    )
    # Accepted row i (0-based rowid) is data row i + 1 + (rejected rows before it). `gap` is how many
    # accepted rows precede the j-th reject; an ASOF join finds the count that applies to each row.
    con.execute(
        """
        create temp table stg_row_gaps as
        select _row - n as gap, max(n) as n_before
        from (select _row, row_number() over (order by _row) as n from stg_rejects)
        group by gap
        """
    )
    n_gaps = con.execute("select count(*) from stg_row_gaps").fetchall()[0][0]
    if n_gaps == 0:
        con.execute("create temp view stg_raw as select rowid + 1 as _row, * from stg_file")
    else:
        con.execute(
            """
            create temp view stg_raw as
            select f.rowid + 1 + coalesce(g.n_before, 0) as _row, f.*
            from stg_file as f
            asof left join stg_row_gaps as g on f.rowid >= g.gap
            """
        )


def _stage_jsonl(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    con.execute(
        """
        create temp table stg_lines as
        select
            line,
            case when json_valid(line) then json_type(line) = 'OBJECT' else false end as is_object,
        from read_csv(
            $path, columns = {'line': 'VARCHAR'}, header = false, auto_detect = false,
            delim = chr(1), quote = '', escape = '', encoding = $encoding
        )
        """,
        {"path": str(file.path), "encoding": file.feed.encoding},
    )
    keys = con.execute(
        """
        select json_key from (
            select unnest(json_keys(line)) as json_key, rowid as line_number from stg_lines where is_object
        ) group by json_key order by min(line_number), json_key
        """
    ).fetchall()
    names = [key for (key,) in keys]
    if not names:
        raise SourceSpecError(f"{file.path.name}: no JSON object lines found")
    extracts = ", ".join(
        f"json_extract_string(line, '$.\"{n.replace(chr(39), chr(39) * 2)}\"') as {quote_ident(n)}"
        for n in names
    )
    con.execute(
        f"create temp table stg_file as select rowid + 1 as _row, {extracts} from stg_lines where is_object"
    )
    con.execute("create temp view stg_raw as select * from stg_file")
    con.execute(
        """
        create temp table stg_rejects as
        select rowid + 1 as _row, 'malformed line: not a JSON object' as reason, line as record,
        from stg_lines
        where line is not null and not is_object
        """
    )
    con.execute("drop table stg_lines")


# ------------------------------------------------------------------------------------------------ map


def _raw_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    described = con.execute("describe stg_raw").fetchall()
    return {name: dtype for name, dtype, *_ in described if name != "_row"}


def _referenced(expression: str, names: list[str]) -> set[str]:
    found = set()
    for name in names:
        pattern = rf'(?<![\w."]){re.escape(name)}(?![\w"])|"{re.escape(name)}"'
        if re.search(pattern, expression, flags=re.IGNORECASE):
            found.add(name)
    return found


def _infer_types(con: duckdb.DuckDBPyConnection, names: list[str]) -> dict[str, str]:
    """For text columns used in expressions: the type most (TYPE_INFERENCE_SHARE) of their values have."""
    if not names:
        return {}
    parts = []
    for name in names:
        q = quote_ident(name)
        parts.append(f"count({q})")
        parts.append(f"count(try_cast({q} as double))")
        parts.append(
            f"count(try_cast({q} as double)) filter (where try_cast({q} as double) = try_cast({q} as bigint))"
        )
        parts.append(f"count(try_cast({q} as timestamp))")
    counts = con.execute(f"select {', '.join(parts)} from stg_raw").fetchall()[0]
    types = {}
    for i, name in enumerate(names):
        n_values, n_double, n_bigint, n_timestamp = counts[4 * i : 4 * i + 4]
        if n_values == 0:
            continue
        if n_bigint >= TYPE_INFERENCE_SHARE * n_values and n_bigint == n_double:
            types[name] = "BIGINT"
        elif n_double >= TYPE_INFERENCE_SHARE * n_values:
            types[name] = "DOUBLE"
        elif n_timestamp >= TYPE_INFERENCE_SHARE * n_values:
            types[name] = "TIMESTAMP"
    return types


def _typed_source(con: duckdb.DuckDBPyConnection, expressions: dict[str, str]) -> tuple[str, str]:
    """The select over stg_raw that the expressions are evaluated on, and the SQL of its cast errors.

    A column used only as a bare mapping (`user_id = "customer"`) stays as read; a text column used
    inside an expression (`value = "qty * unit_price"`) is typed, and values that do not fit are reported.
    """
    raw = _raw_columns(con)
    names = list(raw)
    text_columns = [n for n in names if raw[n] == "VARCHAR"]
    in_expressions = set()
    for expression in expressions.values():
        if expression.strip().strip('"') in names:
            continue
        in_expressions |= _referenced(expression, text_columns)
    types = _infer_types(con, [n for n in text_columns if n in in_expressions])
    selects, errors = ["_row"], []
    for i, name in enumerate(names):
        q = quote_ident(name)
        if name in types:
            raw_alias = f"__raw_{i}"
            selects.append(f"try_cast({q} as {types[name]}) as {q}")
            selects.append(f"{q} as {raw_alias}")
            label = name.replace("'", "''")
            errors.append(
                f"when {raw_alias} is not null and {q} is null "
                f"then 'column {label}: not a {types[name]} (''' || {raw_alias} || ''')'"
            )
        else:
            selects.append(q)
    cast_error = f"case {' '.join(errors)} end" if errors else "null::varchar"
    return f"select {', '.join(selects)} from stg_raw", cast_error


def _check_expression(con, source_sql: str, name: str, expression: str, feed: Feed, file: SourceFile) -> str:
    """The DuckDB type of one mapping expression, or a SourceSpecError naming where it was written."""
    try:
        described = con.execute(f"describe select ({expression}) as x from ({source_sql}) as src").fetchall()
    except duckdb.Error as error:
        origin = feed.origins.get(name, f"[{feed.kind}.columns]")
        detail = str(error).splitlines()[0]
        columns = ", ".join(_raw_columns(con))
        raise SourceSpecError(
            f"{origin}: DuckDB rejects the expression for {name} = {expression!r}: {detail} "
            f"(columns in {file.path.name}: {columns})"
        ) from None
    return described[0][1]


def _text(expression: str) -> str:
    return f"nullif(trim(cast(({expression}) as varchar)), '')"


def _timestamp(expression: str, dtype: str) -> str:
    """SQL turning a value of `dtype` into a UTC TIMESTAMP: timestamps, dates, epoch seconds or ms, text."""
    e = f"({expression})"
    epoch = "make_timestamp(cast(case when abs({x}) > 1e11 then {x} * 1000 else {x} * 1000000 end as bigint))"
    if dtype == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {e})"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"cast({e} as timestamp)"
    if dtype in (
        "BIGINT",
        "INTEGER",
        "HUGEINT",
        "SMALLINT",
        "UBIGINT",
        "UINTEGER",
        "DOUBLE",
        "FLOAT",
    ) or dtype.startswith("DECIMAL"):
        return epoch.format(x=f"cast({e} as double)")
    text = f"trim(cast({e} as varchar))"
    return (
        f"coalesce(try_cast({text} as timestamp), timezone('UTC', try_cast({text} as timestamptz)), "
        f"{epoch.format(x=f'try_cast({text} as double)')})"
    )


def map_file(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """Evaluate the feed's column expressions over `stg_raw` into `stg_events_mapped` / `stg_items_mapped`."""
    feed = file.feed
    source_sql, cast_error = _typed_source(con, feed.columns)
    dtypes = {
        name: _check_expression(con, source_sql, name, expr, feed, file)
        for name, expr in feed.columns.items()
    }
    allowed = EVENT_COLUMNS if file.kind == "events" else ITEM_COLUMNS
    selects = ["_row", f"{cast_error} as cast_error"]
    converted: list[str] = []
    for name in allowed:
        expression = feed.columns.get(name)
        if expression is None:
            selects.append(f"null::{'double' if name in NUMERIC_CANONICALS else 'varchar'} as {name}")
            if name in NUMERIC_CANONICALS:
                selects.append(f"null::varchar as {name}_text")
            if name == "ts":
                selects.append("null::varchar as ts_text")
        elif name == "event_type":
            selects.append(f"lower({_text(expression)}) as event_type")
        elif name == "ts":
            selects.append(f"{_timestamp(expression, dtypes[name])} as ts")
            selects.append(f"{_text(expression)} as ts_text")
            converted.append("ts")
        elif name in NUMERIC_CANONICALS:
            selects.append(f"try_cast(({expression}) as double) as {name}")
            selects.append(f"{_text(expression)} as {name}_text")
            converted.append(name)
        else:
            selects.append(f"{_text(expression)} as {name}")
    # The text of a converted column is kept only where conversion failed: the reason quotes it.
    texts = ", ".join(f"case when {name} is null then {name}_text end as {name}_text" for name in converted)
    outer = f"* replace ({texts})" if texts else "*"
    if file.kind == "events":
        outer += (
            ", case when event_id is null then hash(user_id, item_id, event_type, ts) "
            "else hash('event_id', event_id) end as dedup_key"
        )
    table = "stg_events_mapped" if file.kind == "events" else "stg_items_mapped"
    con.execute(
        f"create or replace temp table {table} as "
        f"select {outer} from (select {', '.join(selects)} from ({source_sql}) as src)"
    )


# ------------------------------------------------------------------------------------- check, dedupe


def check_file(con: duckdb.DuckDBPyConnection, file: SourceFile, event_types: tuple[str, ...]) -> None:
    """Find the rows to quarantine (`stg_quarantine`, with raw records) and the duplicates
    (`stg_*_duplicates`); what is left is the batch to insert, the view `stg_*_new`."""
    prefix = "stg_events" if file.kind == "events" else "stg_items"
    params = {"now": datetime.now(UTC).replace(tzinfo=None), "event_types": list(event_types)}
    rejected_sql = load_sql(f"staging/{prefix}_rejected")
    con.execute(
        f"create or replace temp table {prefix}_rejected as {rejected_sql}",
        params if file.kind == "events" else {},
    )
    names = list(_raw_columns(con))
    record = (
        "to_json(struct_pack(" + ", ".join(f"{quote_ident(n)} := raw.{quote_ident(n)}" for n in names) + "))"
    )
    con.execute(
        f"""
        create or replace temp table stg_quarantine as
        select _row, reason, record from stg_rejects
        union all
        select rejected._row, rejected.reason, cast({record} as varchar) as record
        from {prefix}_rejected as rejected
        join stg_raw as raw on raw._row = rejected._row
        order by _row
        """
    )
    # The raw rows are no longer needed: free their memory before deduplication and insert.
    con.execute("drop view stg_raw")
    con.execute("drop table stg_file")
    con.execute(
        f"create or replace temp table {prefix}_duplicates as {load_sql(f'staging/{prefix}_duplicates')}"
    )
    con.execute(f"create or replace temp view {prefix}_new as {load_sql(f'staging/{prefix}_new')}")


def count_file(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> FileOutcome:
    """Fill in the outcome's row counts and top quarantine reasons from the staged tables."""
    prefix = "stg_events" if outcome.kind == "events" else "stg_items"
    n_staged, n_quarantined, n_bad, n_duplicate = con.execute(
        f"""
        select
            (select count(*) from {prefix}_mapped),
            (select count(*) from stg_quarantine),
            (select count(*) from {prefix}_rejected),
            (select count(*) from {prefix}_duplicates)
        """
    ).fetchall()[0]
    outcome.rows_read = n_staged + n_quarantined - n_bad
    outcome.rows_quarantined = n_quarantined
    outcome.rows_duplicate = n_duplicate
    outcome.rows_inserted = n_staged - n_bad - n_duplicate
    outcome.top_reasons = [
        (reason, n)
        for reason, n in con.execute(
            """
            select regexp_replace(reason, ' \\(.*\\)$', '') as kind, count(*) as n
            from stg_quarantine
            group by kind order by n desc, kind limit 5
            """
        ).fetchall()
    ]
    return outcome


def describe_rejection(outcome: FileOutcome, max_bad_fraction: float) -> str:
    reasons = "; ".join(f"{reason} ({n:,})" for reason, n in outcome.top_reasons)
    return (
        f"{outcome.file}: {outcome.rows_quarantined:,} of {outcome.rows_read:,} rows are bad "
        f"({outcome.bad_fraction:.1%} > max-bad-fraction {max_bad_fraction:.1%}); top reasons: {reasons}"
    )


# ----------------------------------------------------------------------------------------------- write


def quarantine_rows(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Copy the file's bad rows, each with its raw record and reason, into `quarantine`."""
    con.execute(
        "insert into quarantine select $source, $file, _row, reason, record, $batch_id, $at from stg_quarantine",
        {
            "source": outcome.source,
            "file": outcome.file,
            "batch_id": outcome.batch_id,
            "at": datetime.now(UTC).replace(tzinfo=None),
        },
    )
    return outcome.rows_quarantined


def insert_rows(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Insert the file's new rows: events into `events` (and the items they name), or catalogue rows into `items`."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if outcome.kind == "events":
        con.execute(
            load_sql("warehouse/insert_events"),
            {"source": outcome.source, "batch_id": outcome.batch_id, "ingested_at": now},
        )
        names_items = "select exists (select 1 from stg_events_mapped where item_title is not null or item_category is not null)"
        if con.execute(names_items).fetchall()[0][0]:
            con.execute(load_sql("warehouse/upsert_items_from_events"), {"updated_at": now})
    else:
        con.execute(load_sql("warehouse/upsert_items"), {"updated_at": now})
    return outcome.rows_inserted


def record_manifest(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> None:
    con.execute(
        """
        insert into ingest_manifest values (
            $batch_id, $source, $file, $kind, $sha256, $rows_read, $rows_inserted, $rows_duplicate,
            $rows_quarantined, $status, $message, $at
        )
        """,
        {
            "batch_id": outcome.batch_id,
            "source": outcome.source,
            "file": outcome.file,
            "kind": outcome.kind,
            "sha256": outcome.sha256,
            "rows_read": outcome.rows_read,
            "rows_inserted": outcome.rows_inserted,
            "rows_duplicate": outcome.rows_duplicate,
            "rows_quarantined": outcome.rows_quarantined,
            "status": outcome.status,
            "message": outcome.message,
            "at": datetime.now(UTC).replace(tzinfo=None),
        },
    )


STAGING_VIEWS = ("stg_raw", "stg_events_new", "stg_items_new")
STAGING_TABLES = ("stg_file", "stg_quarantine", "stg_rejects", "stg_row_gaps", "stg_lines", "stg_reject_errors", "stg_reject_scans",
                  "stg_events_mapped", "stg_events_rejected", "stg_events_duplicates", "stg_items_mapped",
                  "stg_items_rejected", "stg_items_duplicates")  # fmt: skip


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for view in STAGING_VIEWS:
        con.execute(f"drop view if exists {view}")
    for table in STAGING_TABLES:
        con.execute(f"drop table if exists {table}")
