"""Ingest: raw files into the warehouse, each row inserted once, counted as a duplicate, or quarantined.

A file goes through three steps, all in DuckDB so nothing large is held in Python:
  stage      read it as text (CSV/TSV/JSONL) or as is (Parquet); malformed lines become rejects
             (tasks/ingest/stage.py); a file that cannot be read at all is refused, an empty one said so;
  map        evaluate the source's column expressions into canonical columns;
  check      give every row that cannot be inserted a reason (sql/staging/stg_*_rejected.sql) and find the
             duplicates of earlier rows or of the warehouse (sql/staging/stg_*_duplicates.sql); what is
             left is the batch, the view `stg_*_new`;
then the flow validates the batch and runs quarantine_rows, insert_rows and record_manifest in one transaction.
Every step returns a new FileOutcome; none changes the one it was given.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

import duckdb

from tasks.clock import time_zone_names
from tasks.ingest.sources import (
    BARE_NAME,
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    UNNEST,
    WHERE,
    Feed,
    SourceSpec,
    SourceSpecError,
    check_feed_expressions,
    expression_columns,
    named_columns,
    reads_column,
    reads_epoch,
    rename_columns,
    text_role_columns,
    tried_conversions,
    whole_json_numbers,
)
from tasks.ingest.stage import (
    JSON_TEXT,
    MAX_RECORD_CHARS,
    EmptyFileError,
    FileRefusedError,
    csv_header,
    drop_staging,
    has_data_line,
    hive_partitions,
    sniff_file,
    stage_file,
    staged_rows,
    whole_number_text,
)
from tasks.warehouse import has_table, load_sql, quote_ident

NUMERIC_CANONICALS = {"value", "quantity", "price"}
# A column used inside an expression takes the type that at least this share of its values have;
# the rest of its rows are quarantined with a reason naming the column.
TYPE_INFERENCE_SHARE = 0.9
# A value quoted in a reason is cut to this many characters.
MAX_QUOTED_CHARS = 100
PROGRESS_LOGGER = "segflow.progress"


class FileStatus(StrEnum):
    """What happened to a file; the value is the manifest's text."""

    STAGED = "staged"  # read and checked, not yet written (never in the manifest)
    INGESTED = "ingested"
    REJECTED = "rejected"
    FAILED_VALIDATION = "failed_validation"
    SKIPPED = "skipped"  # the same content was ingested before (never in the manifest)


REFUSED_STATUSES = (FileStatus.REJECTED, FileStatus.FAILED_VALIDATION)


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
    timezone: str = "UTC"  # the source's: a time the file writes without a zone is read in it

    @property
    def kind(self) -> str:
        return self.feed.kind


@dataclass(frozen=True)
class FileOutcome:
    """What ingest did with one file: the manifest row, plus the top reasons when rows were bad.

    Frozen: a step returns a new outcome (`dataclasses.replace`), so no change is lost between tasks.
    """

    source: str
    file: str
    kind: str
    sha256: str
    batch_id: str
    status: FileStatus = FileStatus.STAGED
    rows_read: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    rows_filtered: int = 0  # rows the feed's `where` did not keep
    rows_unnested: int = 0  # rows the feed's `unnest` added: one per element of a record's list, less one
    message: str | None = None
    top_reasons: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def rows_kept(self) -> int:
        """The rows the feed's `where` keeps (every row read without one): what the bad share is of."""
        return self.rows_read + self.rows_unnested - self.rows_filtered

    @property
    def bad_fraction(self) -> float:
        return self.rows_quarantined / self.rows_kept if self.rows_kept else 0.0

    @property
    def is_refused(self) -> bool:
        return self.status in REFUSED_STATUSES

    def counts(self) -> str:
        filtered = f", {self.rows_filtered:,} filtered" if self.rows_filtered else ""
        if self.rows_unnested:
            filtered += (
                f", of {self.rows_read + self.rows_unnested:,} rows unnested from {self.rows_read:,} read"
            )
        return (
            f"{self.rows_inserted:,} inserted, {self.rows_duplicate:,} duplicate, "
            f"{self.rows_quarantined:,} quarantined{filtered}"
        )


def with_status(outcome: FileOutcome, status: FileStatus) -> FileOutcome:
    return replace(outcome, status=status)


def refuse_file(outcome: FileOutcome, status: FileStatus, message: str) -> FileOutcome:
    """The outcome of a refused file: its rows are read but none is inserted, a duplicate, quarantined or
    filtered (the manifest names no row that is not in those tables); the message says what they would have
    been."""
    return replace(
        outcome, status=status, message=message, rows_inserted=0, rows_duplicate=0, rows_quarantined=0,
        rows_filtered=0, rows_unnested=0,
    )  # fmt: skip


def discover_files(spec: SourceSpec) -> list[SourceFile]:
    """Every file of the source, catalogue feeds first so events can be checked against items. A
    SourceSpecError when two feeds of one kind name the same file: ingest takes a file's content once, so
    the second feed would never be read (it was skipped as already ingested, without a word)."""
    found: list[SourceFile] = []
    claimed: dict[tuple[str, Path], Feed] = {}
    for feed in [*spec.items, *spec.events]:
        for path in feed.files():
            resolved = path.resolve()
            first = claimed.setdefault((feed.kind, resolved), feed)
            if first is not feed:
                raise SourceSpecError(
                    f"{resolved.name} is named by two {feed.kind} feeds (mapped at {_feed_origin(first)} and "
                    f"{_feed_origin(feed)}): a file is ingested once, by its content, so the second would never "
                    "be read; map the file in one feed"
                )
            found.append(
                SourceFile(
                    source=spec.name,
                    feed=feed,
                    path=resolved,
                    format=feed.format_for(path),
                    timezone=spec.timezone or "UTC",
                )
            )
    return found


def _feed_origin(feed: Feed) -> str:
    return next(iter(feed.origins.values()), f"[{feed.kind}]")


def ingested_contents(warehouse: Path) -> set[tuple[str, str]] | None:
    """(kind, sha256) of every file a warehouse's manifest holds as ingested (what ingest skips): empty
    without a warehouse; None when it cannot be read now (another process holds it)."""
    if not warehouse.is_file():
        return set()
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return None
    try:
        found = con.execute("select kind, sha256 from ingest_manifest where status = 'ingested'").fetchall()
        return {(kind, sha) for kind, sha in found}
    except duckdb.Error:
        return None
    finally:
        con.close()


# Names ingest's own query gives every file: the row number, and the row as a struct (`from (...) as src`).
QUERY_COLUMNS = ("_row", "src")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def check_file_columns(spec: SourceSpec, ingested: set[tuple[str, str]] | None = frozenset()) -> list[str]:
    """A SourceSpecError, naming the spec's line, when a column expression reads a column that no file of its
    feed has (a typo, a wrong spec): told in a second, before anything is made, where ingest tells it after
    starting a run and reading a file. Only headers are read (a CSV's first line, the names DuckDB gives a
    Parquet file's columns), with the columns DuckDB adds from `key=value` folders (hive partitions) and
    ingest's own (QUERY_COLUMNS).

    Never stricter than ingest: a column that some files of the feed have passes (ingest refuses the files
    that lack it); files whose content is in `ingested` ((kind, sha256), ingested_contents) count for
    nothing, as ingest skips them, and with `ingested` None (the manifest cannot be read) nothing is checked;
    a feed with JSON Lines files (whose columns are the keys of all their lines) is left to ingest, as are
    files it skips or refuses as a whole (no data rows, binary, a broken header), which it reports as such;
    and a name DuckDB reads without a table (current_date, user) is not a column.

    Returns notes for the summary: a mapping that none of a feed's files has, where every one of them was
    ingested before (nothing is read again, so nothing is refused, but the spec is not what they hold)."""
    notes: list[str] = []
    if ingested is None:
        return notes
    by_feed: dict[int, tuple[Feed, list[tuple[SourceFile, list[str] | None]]]] = {}
    for file in discover_files(spec):
        by_feed.setdefault(id(file.feed), (file.feed, []))[1].append((file, _file_columns(file)))
    for feed, files in by_feed.values():
        if any(names is None for _, names in files):
            continue
        missing = _missing_columns(feed, files)
        if missing and ingested:  # hashed only now, for the feed about to be refused: ingest skips these
            n_files = len(files)
            files = [(f, names) for f, names in files if (f.kind, file_sha256(f.path)) not in ingested]
            if not files:
                name, _, columns = missing
                which = (
                    "which its file does not have; it was ingested before and is not"
                    if n_files == 1
                    else f"which none of its {n_files:,} files has; they were ingested before and are not"
                )
                notes.append(
                    f"{feed.origin(name)}: {name} = {feed.as_written(name)!r} reads {', '.join(columns)}, "
                    f"{which} read again (a changed mapping does not change rows already in the warehouse), but "
                    "a new file of this layout would be refused"
                )
                continue
            missing = _missing_columns(feed, files)
        if missing:
            name, expression, columns = missing
            first, first_names = next((f, names) for f, names in files if names)
            where = (
                f"which {first.path.name} does not have (its columns"
                if len(files) == 1
                else f"which none of its {len(files)} files has (the columns of {first.path.name}"
            )
            raise SourceSpecError(
                f"{feed.origin(name)}: the expression for {name} = {feed.as_written(name)!r} reads "
                f"{', '.join(columns)}, {where}: {', '.join(first_names)}){_delimiter_hint(first_names)}"
            )
    return notes


def _delimiter_hint(names: list[str]) -> str:
    """Advice when a header read as one column holds another delimiter (`order_id;customer_id;...`: Excel in a
    locale with decimal commas writes `;`)."""
    if len(names) != 1:
        return ""
    found = [d for d in (";", "\t", "|") if d in names[0]]
    if not found:
        return ""
    written = found[0].replace("\t", "\\t")
    return (
        f"; its header reads as one column holding '{written}': a file delimited by '{written}' needs "
        f'delimiter = "{written}" in its feed'
    )


def _missing_columns(
    feed: Feed, files: list[tuple[SourceFile, list[str] | None]]
) -> tuple[str, str, list[str]] | None:
    """The feed's first mapping that reads columns none of these files has (first_unread); None also when no
    file has columns to look in."""
    columns = [name for _, names in files for name in names or []]
    return first_unread(feed, columns) if columns else None


def first_unread(feed: Feed, columns: Iterable[str]) -> tuple[str, str, list[str]] | None:
    """The feed's first mapping (or its row filter, `where`) that reads columns not among `columns` (nor
    ingest's own, QUERY_COLUMNS): (canonical name, expression, those columns), or None."""
    element, _ = feed.unnested()  # a column of the rows the mappings read, not of the file
    present = {ascii_lower(column) for column in [*columns, *QUERY_COLUMNS, *([element] if element else [])]}
    for name, expression in feed.expressions(with_unnest=True).items():
        missing = sorted(c for c in named_columns(expression) if ascii_lower(c) not in present)
        if missing:
            return name, expression, missing
    return None


def ascii_lower(name: str) -> str:
    """A column name as DuckDB compares names: only ASCII letters ignore case (`Ünit` is not `ünit`)."""
    return name.translate(ASCII_LOWER)


def _file_columns(file: SourceFile) -> list[str] | None:
    """The columns ingest will see in a file: none for a file whose rows it will not read (no data rows,
    binary, a broken header), None where only reading the whole file tells (JSON Lines, an encoding Python
    does not know)."""
    if file.format == "jsonl":
        return None
    try:
        sniff_file(file)
        if file.format == "parquet":
            return _parquet_columns(file.path)
        names = csv_header(file, count_rows=False) if has_data_line(file) else []
    except LookupError:
        return None
    except (EmptyFileError, FileRefusedError, OSError, EOFError, zlib.error, duckdb.Error):
        return []
    return [*names, *hive_partitions(file.path)] if names else []


def _parquet_columns(path: Path) -> list[str]:
    """The columns DuckDB reads from a Parquet file (its names for repeated and empty ones, and the hive
    columns of `key=value` folders); none when the file has no rows."""
    with duckdb.connect() as con:
        n_rows = con.execute("select sum(row_group_num_rows) from parquet_metadata($p)", {"p": str(path)})
        if not (n_rows.fetchall()[0][0] or 0):
            return []
        described = con.execute("describe select * from read_parquet($p)", {"p": str(path)}).fetchall()
    return [name for name, *_ in described]


def record_source(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    """Keep the source's event types, validation settings, location and time zone in `sources` (unchanged: no
    write); a SourceSpecError when its events were read in another zone (check_source_timezone)."""
    check_source_timezone(con, spec)
    con.execute(
        load_sql("warehouse/upsert_source"),
        {
            "name": spec.name,
            "event_types": list(spec.event_types),
            "validation": spec.validation.model_dump_json(),
            "updated_at": datetime.now(UTC).replace(tzinfo=None),
            "location": spec.location,
            "timezone": spec.timezone or "UTC",
        },
    )


def check_source_timezone(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    """A SourceSpecError when the source has events in the warehouse read in another zone than its spec names
    now: its files' times without a zone would be stored hours from the same events read before (an
    overlapping export stored twice, dedup matches times), and the stored ones would stay as they were read."""
    zone = spec.timezone or "UTC"
    query = "select coalesce(any_value(timezone), 'UTC') from sources where name = $name"
    (stored,) = con.execute(query, {"name": spec.name}).fetchall()[0]
    if stored == zone:
        return
    query = "select count(*) from events where source = $name"
    (n_events,) = con.execute(query, {"name": spec.name}).fetchall()[0]
    if n_events:
        raise SourceSpecError(
            f"source {spec.name!r} now "
            + (f"names timezone {zone!r}" if spec.timezone else "names no timezone (so UTC)")
            + f", but its {n_events:,} events in the warehouse were "
            f"read in {stored!r} (a time without a zone as its wall clock): read again, the same events would be "
            f"stored hours apart from them (an overlapping export stored twice), and those stored would stay as "
            f"read. Keep timezone = {stored!r} in the spec and measure day parts by another clock with `segflow run "
            f"--timezone {zone}`, or ingest the source into a new workspace"
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


# ------------------------------------------------------------------------------------------------ map


def _raw_columns(con: duckdb.DuckDBPyConnection, relation: str = "stg_rows") -> dict[str, str]:
    """The columns the feed's expressions read (`stg_rows`; `stg_raw`: the file's records) and their types."""
    described = con.execute(f"describe {relation}").fetchall()
    return {name: dtype for name, dtype, *_ in described if name not in ("_row", *UNNEST_COLUMNS)}


def _infer_types(con: duckdb.DuckDBPyConnection, names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """For text columns an expression computes with: the type most (TYPE_INFERENCE_SHARE) of their values
    have; DOUBLE for a column empty in every row (a discount column blank for a whole day: null, but it
    computes like the other days'). Second, for the columns under that share that some values fit, the type
    most of those values have: the choice left where text cannot run (`price = 0` on a column of `n/a`s).

    Timestamps are typed with their zone (TIMESTAMPTZ): an offset in the text is honoured, and text without
    one is UTC (stage_file sets the session's zone)."""
    if not names:
        return {}, {}
    parts = []
    for name in names:
        q = quote_ident(name)
        parts.append(f"count(nullif(trim({q}), ''))")
        parts.append(f"count(try_cast({q} as double))")
        parts.append(
            f"count(try_cast({q} as double)) filter (where try_cast({q} as double) = try_cast({q} as bigint))"
        )
        parts.append(f"count(try_cast({zoned_text(q)} as timestamptz))")
    counts = con.execute(f"select {', '.join(parts)} from stg_rows").fetchall()[0]
    types, fallbacks = {}, {}
    for i, name in enumerate(names):
        n_values, n_double, n_bigint, n_timestamp = counts[4 * i : 4 * i + 4]
        if n_values == 0:
            types[name] = "DOUBLE"
        elif n_bigint >= TYPE_INFERENCE_SHARE * n_values and n_bigint == n_double:
            types[name] = "BIGINT"
        elif n_double >= TYPE_INFERENCE_SHARE * n_values:
            types[name] = "DOUBLE"
        elif n_timestamp >= TYPE_INFERENCE_SHARE * n_values:
            types[name] = "TIMESTAMPTZ"
        elif max(n_double, n_timestamp) > 0:
            fallbacks[name] = "DOUBLE" if n_double >= n_timestamp else "TIMESTAMPTZ"
    return types, fallbacks


TYPE_LABELS = {"TIMESTAMPTZ": "TIMESTAMP"}


def quoted_value(sql: str) -> str:
    """SQL text for `'value'` inside a reason, cut to MAX_QUOTED_CHARS characters."""
    cut = f"left({sql}, {MAX_QUOTED_CHARS}) || case when length({sql}) > {MAX_QUOTED_CHARS} then '...' else '' end"
    return "'''' || " + cut + " || ''''"


class TypedSource(NamedTuple):
    """What a file's expressions are evaluated on: the select over stg_rows, the SQL of its cast errors (and of
    those of the columns its `where` computes with), the expressions as they read it, and the columns it
    types."""

    sql: str
    cast_error: str
    where_cast_error: str
    expressions: dict[str, str]
    typed: frozenset[str]


def _typed_source(
    con: duckdb.DuckDBPyConnection, expressions: dict[str, str], unnested: bool = False
) -> TypedSource:
    """How the expressions read the file's text columns.

    A text column an expression computes or compares with (`qty * unit_price`, `price = 0`,
    `created_at::timestamp`, `greatest(a, b)`) is typed as most of its values read, and a value that does
    not fit is quarantined with a reason naming the column. A column the expression reads only as text keeps
    every character: inside `||` and string functions (`'ean:' || ean` keeps 0812), cast to text or
    try_cast by the expression itself, or passed through to a text mapping (`user_id = "coalesce(user_id,
    pseudo_id)"`); so does a column mapped bare (`item_id = "sku"`). Both read the column's text even where
    another expression types it (`_reading`).
    """
    raw = _raw_columns(con)
    names = list(raw)
    text_columns = {n.lower(): n for n in names if raw[n] == "VARCHAR"}
    bare_names = {ascii_lower(n) for n in names}  # as DuckDB compares names: `order` maps the column `Order`
    reads_of: dict[str, tuple[set[str], set[str]]] = {}  # mapping -> (columns to type, all it reads)
    for canonical, expression in expressions.items():
        if bare_name(expression) in bare_names:
            continue
        as_text = text_role_columns(expression, _text_result(canonical))
        reads = {text_columns[c] for c in expression_columns(expression) if c in text_columns}
        if reads:
            reads_of[canonical] = ({n for n in reads if n.lower() not in as_text}, reads)
    inferred, fallbacks = _infer_types(con, [n for n in names if any(n in r for _, r in reads_of.values())])
    types: dict[str, str] = {}
    for canonical, (to_type, reads) in reads_of.items():
        expression = expressions[canonical]
        typed = {name: inferred[name] for name in sorted(to_type) if name in inferred}
        if not _binds(con, expression, names, typed):
            # one column's other choice may let it bind: text for a string function DuckDB does not list
            # above, a number for a column read as text that the expression also computes with
            trials = [{o: t for o, t in typed.items() if o != name} for name in typed]
            trials += [typed | {name: inferred[name]} for name in sorted(reads - to_type) if name in inferred]
            # a column under the share that the expression cannot compute with as text (`price * qty` where
            # the rows a `where` filters say n/a): the type most of its values have, the rest quarantined
            trials += _fallback_trials(typed, to_type, fallbacks)
            typed = next((t for t in trials if _binds(con, expression, names, t)), typed)
        types |= typed
    types = _runnable_types(con, expressions, names, types, reads_of, fallbacks)
    errors = {}
    for name, raw_alias in _raw_aliases(names, types).items():
        q = quote_ident(name)
        label = name.replace("'", "''")
        type_label = TYPE_LABELS.get(types[name], types[name])
        errors[name] = (
            f"when {raw_alias} is not null and {q} is null "
            f"then 'column {label}: not a {type_label} (' || {quoted_value(raw_alias)} || ')'"
        )
    where_reads = reads_of.get(WHERE, (set(), set()))[0]  # the columns the where computes with
    return TypedSource(
        _typed_select(names, types, unnested),
        _case(errors.values()),
        _case(error for name, error in errors.items() if name in where_reads),
        _reading(expressions, names, types),
        frozenset(types),
    )


def _case(whens: Iterable[str]) -> str:
    whens = list(whens)
    return f"case {' '.join(whens)} end" if whens else "null::varchar"


def _text_result(canonical: str) -> bool:
    """Whether a mapping's value is text (an id, a type, a title): what a column passed through to it is."""
    return canonical not in (*NUMERIC_CANONICALS, "ts", WHERE)


def _raw_aliases(names: list[str], types: dict[str, str]) -> dict[str, str]:
    """The name under which each typed column's text stays readable in `_typed_select`."""
    return {name: f"__raw_{i}" for i, name in enumerate(names) if name in types}


def _typed_select(names: list[str], types: dict[str, str], unnested: bool = False) -> str:
    """The file's columns from stg_rows, those in `types` typed so (a value that does not fit is null) with
    their text beside them (`_raw_aliases`); `unnested`: with the columns unnest_rows adds (UNNEST_COLUMNS)."""
    aliases = _raw_aliases(names, types)
    selects = ["_row", *UNNEST_COLUMNS] if unnested else ["_row"]
    for name in names:
        q = quote_ident(name)
        if name in types:
            selects += [f"{_typed(q, types[name])} as {q}", f"{q} as {aliases[name]}"]
        else:
            selects.append(q)
    return f"select {', '.join(selects)} from stg_rows"


def _reading(expressions: dict[str, str], names: list[str], types: dict[str, str]) -> dict[str, str]:
    """The expressions as they read `_typed_select`: a typed column is read as its text where an expression
    maps it bare or reads it only as text (`'SHOE-' || size` keeps `9` where `size > 9` types it 9.0)."""
    aliases = _raw_aliases(names, types)
    bare = {ascii_lower(name): alias for name, alias in aliases.items()}
    by_name = {name.lower(): alias for name, alias in aliases.items()}
    reading = {}
    for canonical, expression in expressions.items():
        if bare_name(expression) in bare:
            reading[canonical] = bare[bare_name(expression)]
            continue
        as_text = text_role_columns(expression, _text_result(canonical)) if by_name else set()
        renames = {name: by_name[name] for name in as_text if name in by_name}
        reading[canonical] = rename_columns(expression, renames) if renames else expression
    return reading


def _runnable_types(
    con: duckdb.DuckDBPyConnection, expressions: dict[str, str], names: list[str], types: dict[str, str],
    reads_of: dict[str, tuple[set[str], set[str]]], fallbacks: dict[str, str],
) -> dict[str, str]:  # fmt: skip
    """`types`, or a choice that lets every expression run on every row of this file where `types` does not.
    An expression can bind and still fail on a value DuckDB converts for it: a text column of `n/a`s left
    text and compared with `0`. Such a column takes the type most of its values have (fallbacks; the rest
    quarantined with a reason) where that runs; where it does not, map_file refuses the file naming the
    expression (`day >= '2024-03-01'` on epoch seconds: never compared as text, which would filter all)."""
    if _runs(con, expressions, names, types):
        return types
    for canonical, (to_type, _) in reads_of.items():
        if _runs(con, {canonical: expressions[canonical]}, names, types):
            continue
        trials = _fallback_trials(types, to_type, fallbacks)
        types = next((t for t in trials if _runs(con, expressions, names, t)), types)
    return types


def _fallback_trials(
    types: dict[str, str], to_type: set[str], fallbacks: dict[str, str]
) -> list[dict[str, str]]:
    """`types` with the fallback type of the columns in `to_type` it leaves text: all of them, then each."""
    untyped = sorted(n for n in to_type - types.keys() if n in fallbacks)
    return [types | {n: fallbacks[n] for n in untyped}, *({**types, n: fallbacks[n]} for n in untyped)]


def _runs(
    con: duckdb.DuckDBPyConnection, expressions: dict[str, str], names: list[str], types: dict[str, str]
) -> bool:
    """Whether DuckDB evaluates the expressions on every row of the file, the columns in `types` typed so."""
    reading = _reading(expressions, names, types)
    hashes = ", ".join(f"min(hash(({e})))" for e in reading.values())
    try:
        con.execute(f"select {hashes} from ({_typed_select(names, types)})").fetchall()
    except duckdb.Error:
        return False
    return True


def bare_name(expression: str) -> str:
    """A mapping as the column name it would be if it were bare (`"Order"` -> order), to compare with
    `ascii_lower` names as DuckDB does."""
    return ascii_lower(expression.strip().strip('"'))


def _typed(column: str, dtype: str) -> str:
    return f"try_cast({zoned_text(column) if dtype == 'TIMESTAMPTZ' else column} as {dtype})"


def _binds(con: duckdb.DuckDBPyConnection, expression: str, names: list[str], types: dict[str, str]) -> bool:
    """Whether DuckDB binds `expression` over the file's columns, those in `types` typed so (DuckDB casts no
    text implicitly: `qty * 2` and `qty < 0` do not bind on text)."""
    try:
        con.execute(f"describe select ({expression}) from ({_typed_select(names, types)})")
    except duckdb.Error:
        return False
    return True


def _check_expression(
    con, source_sql: str, name: str, expression: str, feed: Feed, file: SourceFile, typed: Iterable[str]
) -> str:
    """The DuckDB type of one mapping expression, or a SourceSpecError naming where it was written (and the
    text columns it computes with, which no type fits: `price * qty` on `1,299.00`)."""
    try:
        described = con.execute(f"describe select ({expression}) as x from ({source_sql}) as src").fetchall()
    except duckdb.Error as error:
        detail = str(error).splitlines()[0]
        columns = ", ".join(_raw_columns(con))
        raise SourceSpecError(
            f"{feed.origin(name)}: DuckDB rejects the expression for {name} = {feed.as_written(name)!r}: "
            f"{detail} (columns in {file.path.name}: {columns}){_text_hint(con, name, expression, typed)}"
        ) from None
    return described[0][1]


def _text_hint(con: duckdb.DuckDBPyConnection, name: str, expression: str, typed: Iterable[str]) -> str:
    """Which text columns an expression computes with stay text in this file, each with a value that fits no
    type, and how to convert it in the expression; "" when there are none."""
    raw = _raw_columns(con)
    as_text = text_role_columns(expression, _text_result(name))
    kept = {n.lower() for n in typed}
    text = [
        n for n in raw if raw[n] == "VARCHAR" and n.lower() in expression_columns(expression) - as_text - kept
    ]
    if not text:
        return ""
    described = []
    for column in text:
        q = quote_ident(column)
        found = con.execute(
            f"select {q} from stg_rows where nullif(trim({q}), '') is not null "
            f"and try_cast({q} as double) is null limit 1"
        ).fetchall()
        described.append(f"{column} (e.g. {found[0][0]!r})" if found else column)
    first = text[0] if BARE_NAME.fullmatch(text[0]) else quote_ident(text[0])
    return (
        f"; it computes with {', '.join(described)}, text in this file (too few of its values read as a number "
        f"or a time): convert it in the expression, e.g. try_cast(replace({first}, ',', '') AS DOUBLE) for "
        f"thousands separators, try_cast(replace({first}, ',', '.') AS DOUBLE) for decimal commas"
    )


def _text(expression: str) -> str:
    return f"nullif(trim(cast(({expression}) as varchar)), '')"


def _tried_text(expression: str) -> str:
    """The text of a converted column's value, or, where the expression gives none, the input of a TRY_CAST or
    try_strptime in it that did not convert (`try_cast(price AS DOUBLE)` on `59,90`): the row is then
    quarantined quoting it, as a value mapped bare would be, never stored without its value unseen."""
    failed = [
        f"case when ({conversion}) is null and ({converted}) is not null then {_text(given)} end"
        for given, conversion, converted in tried_conversions(expression)
    ]
    return f"coalesce({', '.join([_text(expression), *failed])})" if failed else _text(expression)


# Ids: a floating-point column of whole numbers (pandas writes int ids as float64 once one is missing) gives
# the integer's text, so user 1 stays user 1 ("1", never "1.0"); NaN is a missing id.
ID_COLUMNS = ("user_id", "item_id", "session_id", "event_id")


def _id_text(expression: str) -> str:
    x = f"(({expression})::double)"
    return (
        f"case when isnan({x}) or isinf({x}) then null "
        f"else coalesce({whole_number_text(x)}, cast({x} as varchar)) end"
    )


# A CSV id whose every value in the file is a whole number with a fraction of zeros: pandas' float64 ids
# (`to_csv` writes 1.0, and NaN as an empty field). CSV has no types, so the file's values say it: one value
# that is not of this form (u1, 1.5, 12) and the column is read as written.
FLOAT_ID = r"-?[0-9]+\.0+"


def _float_id_columns(
    con: duckdb.DuckDBPyConnection, file: SourceFile, rows_sql: str, columns: dict[str, str], dtypes: dict
) -> set[str]:
    """The id columns of a CSV file read as whole numbers (FLOAT_ID): those whose every non-empty value, over
    the rows `rows_sql` gives, is one. A column of other ids stops at its first value. Rows that cannot be
    given (a where that fails) give none: map_file's own statement then fails and names the expression."""
    if file.format not in ("csv", "tsv"):
        return set()
    found = set()
    for name in ID_COLUMNS:
        if name not in columns or dtypes.get(name) != "VARCHAR":
            continue
        value = _text(columns[name])
        try:
            other = con.execute(
                f"select 1 from (select {value} as v from {rows_sql}) "
                f"where v is not null and not regexp_full_match(v, '{FLOAT_ID}') limit 1"
            ).fetchall()
            # Every value of the form: a float column if it has one at all (this stops at the first too).
            if (
                not other
                and con.execute(f"select 1 from {rows_sql} where {value} is not null limit 1").fetchall()
            ):
                found.add(name)
        except duckdb.Error:
            return set()
    return found


NUMBER_TYPES = ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT",
                "UTINYINT", "UHUGEINT", "DOUBLE", "FLOAT")  # fmt: skip


def _timestamp(expression: str, dtype: str, timezone: str = "UTC") -> str:
    """SQL turning a value of `dtype` into a UTC TIMESTAMP: timestamps (zoned ones converted), dates, epoch
    seconds, milliseconds, microseconds or nanoseconds, and text holding any of these (an ISO offset or `Z`
    honoured). A time without a zone (text, a TIMESTAMP, a date's midnight) is the local time of `timezone`:
    for text, the session's zone says so (map_rows sets it). A value that is none of them becomes null, never
    an error."""
    e = f"({expression})"
    if dtype == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {e})"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        if timezone == "UTC":
            return f"cast({e} as timestamp)"
        return f"timezone('UTC', timezone('{timezone}', cast({e} as timestamp)))"
    if dtype in NUMBER_TYPES or dtype.startswith("DECIMAL"):
        whole = dtype not in ("DOUBLE", "FLOAT") and not dtype.startswith("DECIMAL")
        return _epoch(f"try_cast({e} as {'hugeint' if whole else 'double'})", whole)
    text = f"trim(cast({e} as varchar))"
    # Only the zoned cast: a plain TIMESTAMP cast drops whatever follows the time (`01:02 CEST` would stay
    # 01:02 as if UTC); text it cannot read is quarantined, quoted.
    return (
        f"coalesce(timezone('UTC', try_cast({zoned_text(text)} as timestamptz)), "
        f"case when regexp_full_match({text}, '-?[0-9]+') then {_epoch(f'try_cast({text} as hugeint)', True)} "
        f"else {_epoch(f'try_cast({text} as double)')} end)"
    )


def _epoch(x: str, whole: bool = False) -> str:
    """SQL for epoch seconds, milliseconds, microseconds (GA4's event_timestamp) or nanoseconds, told apart by
    size: today is 1.8e9 s, 1.8e12 ms, 1.8e15 us, 1.8e18 ns, and each cut is 3,000 years past the unit
    below. `whole`: `x` is an integer (nanoseconds divide exactly; a double cannot hold them)."""
    divide = "//" if whole else "/"
    return (
        f"make_timestamp(try_cast(case when abs({x}) > 1e17 then {x} {divide} 1000 when abs({x}) > 1e14 "
        f"then {x} when abs({x}) > 1e11 then {x} * 1000 else {x} * 1000000 end as bigint))"
    )


# The largest UTC offset a zone has (Kiribati, +14:00), in seconds.
MAX_OFFSET_S = 14 * 3600


def create_time_zone_names(con: duckdb.DuckDBPyConnection) -> None:
    """`time_zone_names(lower_name, name)`: every IANA zone name, found by its lowercase spelling (temp, once
    per connection; what `_zone` looks names up in)."""
    rows = ", ".join(f"('{name.lower()}', '{name}')" for name in sorted(time_zone_names()))
    con.execute(
        f"create temp table if not exists time_zone_names as select * from (values {rows}) as t(lower_name, name)"
    )


def _zone(expression: str) -> str:
    """SQL for an event's time zone, the user's clock at the event: an IANA name in any case (`Europe/Berlin`,
    `europe/berlin`; stored as the database spells it), a UTC offset (`+02:00`, `-0530`, `UTC+2`, `GMT-05`,
    `Z`: a sign, at most 14 hours) or else a number of seconds east of UTC (GA4's
    `device.time_zone_offset_seconds`: `7200`, `-3600`), offsets stored as `+HH:MM`. Null for anything else
    (the row is quarantined with the text) and for an offset no zone has (over 14 hours, or not a multiple of
    15 minutes: `60`, one minute, is no zone's)."""
    text = f"trim(cast(({expression}) as varchar))"
    pattern = r"^(?:UTC|GMT)?\s*([+-])([0-9]{1,2})(?::?([0-9]{2}))?$"
    sign = f"case when regexp_extract(upper({text}), '{pattern}', 1) = '-' then -1 else 1 end"
    hours = f"cast(regexp_extract(upper({text}), '{pattern}', 2) as integer)"
    minutes = f"coalesce(try_cast(nullif(regexp_extract(upper({text}), '{pattern}', 3), '') as integer), 0)"
    # An offset first (`-0500`: five hours), then seconds (`-3600`: no zone is 36 hours off, so one hour).
    seconds = (
        f"case when regexp_matches(upper({text}), '{pattern}') and {hours} <= 14 and {minutes} < 60 "
        f"then {sign} * ({hours} * 3600 + {minutes} * 60) "
        f"when regexp_full_match({text}, '[+-]?[0-9]+([.]0*)?') then try_cast(try_cast({text} as double) as bigint) end"
    )
    offset = (
        f"case when abs({seconds}) <= {MAX_OFFSET_S} and {seconds} % 900 = 0 then printf('%s%02d:%02d', "
        f"case when {seconds} < 0 then '-' else '+' end, abs({seconds}) // 3600, abs({seconds}) % 3600 // 60) end"
    )
    return (
        f"case when upper({text}) = 'Z' then '+00:00' when {seconds} is not null then {offset} "
        f"else (select time_zone_names.name from time_zone_names where time_zone_names.lower_name = lower({text})) end"
    )


# An offset after a time that no zone has (over 14 hours, 60 minutes or more): DuckDB reads `+2500` as 25 hours.
IMPOSSIBLE_OFFSET = (
    r"[0-9]:[0-9]{2}(:[0-9]{2}([.,][0-9]*)?)?[+-]((1[5-9]|[2-9][0-9])(:?[0-9]{2})?|[0-9]{2}:?[6-9][0-9])$"
)


def zoned_text(text: str) -> str:
    """SQL for timestamp text with the space before a trailing offset taken out (`10:00:00 -0500`, as a
    Shopify export writes it, or ` +01:00`, ` Z`): DuckDB reads the offset only when it follows the time.
    Null for an offset no zone has (`+2500`), which DuckDB would read as 25 hours: the row is quarantined."""
    zulu = rf"regexp_replace(trim({text}), '\s*[Zz]$', 'Z')"  # `10:00 z` too
    joined = rf"regexp_replace({zulu}, '\s+([+-][0-9]{{2}}(:?[0-9]{{2}})?|Z)$', '\1')"
    return f"case when regexp_matches({joined}, '{IMPOSSIBLE_OFFSET}') then null else {joined} end"


# What unnest_rows adds to each row: its record's row in the file, the element's place in the list (from 1; 0
# for a record with no element), and why the record's list gave no element (null when it did).
UNNEST_COLUMNS = ("_segflow_record", "_segflow_element", "_segflow_unnest_error")


def stage_rows(con: duckdb.DuckDBPyConnection, file: SourceFile) -> int:
    """The rows the feed's expressions read, the view `stg_rows`: the file's records (`stg_raw`), or with the
    feed's `unnest`, one row per element of each record's list, the element a column of its name beside the
    record's columns. Returns the rows unnesting added (rows - records): a record whose list is missing,
    empty or not a list stays one row, quarantined with the reason unless the feed's `where` filters it.

    The list is a DuckDB list (a Parquet list of structs: the element is a struct, `item.item_id`) or a JSON
    array, as text or JSON (a JSON Lines or CSV column, `properties->'products'`: the element is JSON,
    `item->>'item_id'`)."""
    element, expression = file.feed.unnested()
    if element is None:
        con.execute("create or replace temp view stg_rows as select * from stg_raw")
        return 0
    feed = file.feed
    columns = _raw_columns(con, "stg_raw")
    if ascii_lower(element) in {ascii_lower(c) for c in columns}:
        raise SourceSpecError(
            f"{feed.origin(UNNEST)}: unnest's element {element!r} is a column of {file.path.name}: name the "
            'element otherwise (unnest = { item = "items" } makes a column item)'
        )
    _refuse_missing_columns(con, file, "stg_raw")  # the list first: the mappings read its element
    try:
        dtype = con.execute(f"describe select ({expression}) as x from stg_raw").fetchall()[0][1]
    except duckdb.Error as error:
        raise SourceSpecError(
            f"{feed.origin(UNNEST)}: DuckDB rejects unnest's list {element} = {expression!r}: "
            f"{str(error).splitlines()[0]} (columns in {file.path.name}: {', '.join(columns)})"
        ) from None
    listed = f"({expression})"
    if dtype in ("VARCHAR", "JSON"):
        text = f"cast({listed} as varchar)"
        is_array = f"json_valid({text}) and json_type({text}) = 'ARRAY'"
        # Elements as JSON: `item->>'item_id'` reads an object's field, and is null (no error) on a string or
        # a number; a mapping that gives JSON (`item`, `item->'sku'`) is read as its text (map_file).
        listed = f"case when {is_array} then json_extract({text}, '$[*]') end"
    elif not dtype.endswith("[]"):
        raise SourceSpecError(
            f"{feed.origin(UNNEST)}: unnest's list {element} = {expression!r} gives {dtype} in "
            f"{file.path.name}, not a list or a JSON array"
        )
    label = element.replace("'", "''")
    value = f"cast(({expression}) as varchar)"
    error = (
        f"case when lists._segflow_list is null and nullif(trim({value}), '') is null then '{label}: missing, no list "
        f"to unnest' when lists._segflow_list is null then '{label}: not a list (' || {quoted_value(value)} || ')' "
        f"when len(lists._segflow_list) = 0 then '{label}: an empty list, no event' end"
    )
    record_columns = ", ".join(quote_ident(c) for c in columns)
    try:
        con.execute(
            f"""
            create or replace temp table stg_unnested as
            select
                row_number() over (order by _segflow_record, _segflow_element) as _row, *
            from (
                select
                    lists._row as _segflow_record,
                    unnest(case when len(lists._segflow_list) > 0 then range(1, len(lists._segflow_list) + 1) else [0] end)
                        as _segflow_element,
                    {error} as _segflow_unnest_error,
                    {record_columns},
                    unnest(case when len(lists._segflow_list) > 0 then lists._segflow_list else [null] end)
                        as {quote_ident(element)},
                from (select *, {listed} as _segflow_list from stg_raw) as lists
            )
            """
        )
    except duckdb.Error as failed:
        raise FileRefusedError(
            f"{file.path}: unnest = {{ {element} = {expression!r} }} ({feed.origin(UNNEST)}) fails on a row "
            f"of this file: {str(failed).strip().splitlines()[0][:200]}; the file is refused",
            rows_read=staged_rows(con),
        ) from None
    con.execute("create or replace temp view stg_rows as select * from stg_unnested")
    counted = "select count(*), count(distinct _segflow_record) from stg_unnested"
    n_rows, n_records = con.execute(counted).fetchall()[0]
    return n_rows - n_records


def map_file(con: duckdb.DuckDBPyConnection, file: SourceFile) -> int:
    """Evaluate the feed's column expressions over `stg_rows` into `stg_events_mapped` / `stg_items_mapped`,
    for the rows its `where` keeps; returns how many it did not keep (filtered).

    A row the filter cannot tell because a column it reads has a value of the wrong type is kept, and so
    quarantined with the reason, never filtered unseen. An expression that fails on a row (a cast or strptime
    that does not fit) refuses the file, naming it."""
    feed = file.feed
    # Parsed again here, not only when the spec is read: a feed can be built in code too.
    check_feed_expressions(feed)
    _refuse_missing_columns(con, file)
    element, _ = feed.unnested()
    source = _typed_source(con, feed.expressions(), unnested=element is not None)
    source_sql, cast_error = source.sql, source.cast_error
    if element is not None:  # a record whose list cannot be unnested: its one row says why
        cast_error = f"coalesce(_segflow_unnest_error, {cast_error})"
    dtypes = {
        name: _check_expression(con, source_sql, name, expr, feed, file, source.typed)
        for name, expr in source.expressions.items()
    }
    columns = {name: expr for name, expr in source.expressions.items() if name != WHERE}
    where = source.expressions.get(WHERE)
    if where is not None and dtypes[WHERE] != "BOOLEAN":
        raise SourceSpecError(
            f"{feed.origin(WHERE)}: where = {feed.as_written(WHERE)!r} gives {dtypes[WHERE]}, not true or "
            "false: a row filter is a condition (type = 'track', amount > 0)"
        )
    allowed = EVENT_COLUMNS if file.kind == "events" else ITEM_COLUMNS
    selects = ["_row", f"{cast_error} as cast_error"]
    converted: list[str] = []
    # A mapping that gives JSON (`item`, `item->'sku'`) is read as its text: "S1" as S1, an object as its JSON.
    # An id read from JSON (`customer->>'id'`, `item->'sku'`) gives a whole number written as a float (1.0:
    # pandas' float64) as the integer's text, as a top-level key of JSON Lines does: user 1 is one user.
    con.execute(JSON_TEXT)
    columns = {
        name: (
            (
                f"segflow_json_text(({expression}))"
                if name in ID_COLUMNS
                else f"json_extract_string(({expression}), '$')"
            )
            if dtypes[name] == "JSON"
            else whole_json_numbers(expression)
            if name in ID_COLUMNS
            else expression
        )
        for name, expression in columns.items()
    }
    # A row whose value the where computes with has the wrong type is kept, so quarantined with the reason.
    kept = f"where ({where}) or {source.where_cast_error} is not null" if where else ""
    if where and element is not None and reads_column(where, element):
        kept += " or _segflow_unnest_error is not null"  # the where cannot tell without the element
    with source_zone(con, file.timezone):  # the where sees times as the mapping below does
        float_ids = _float_id_columns(con, file, f"({source_sql}) as src {kept}", columns, dtypes)
    for name in allowed:
        expression, dtype = columns.get(name), "VARCHAR" if dtypes.get(name) == "JSON" else dtypes.get(name)
        if expression is None:
            selects.append(f"null::{'double' if name in NUMERIC_CANONICALS else 'varchar'} as {name}")
            if name in (*NUMERIC_CANONICALS, "timezone"):
                selects.append(f"null::varchar as {name}_text")
            if name == "ts":
                selects.append("null::varchar as ts_text")
        elif name == "event_type":
            selects.append(f"lower({_text(expression)}) as event_type")
        elif name == "event_id" and element is not None and not reads_column(expression, element):
            # The record's id made one per element by its item (`o1#SKU-1`; the item's second line in the record
            # `o1#SKU-1#2`), not by its place in the list: a record delivered again with its items in another
            # order, or one more, repeats no event and loses none. An id the element holds (`line->>'line_id'`)
            # is taken as it is.
            item = _text(columns["item_id"])
            nth = f"row_number() over (partition by _segflow_record, {item} order by _segflow_element)"
            selects.append(
                f"{_text(expression)} || '#' || {item} || case when {nth} > 1 then '#' || {nth} else '' end "
                "as event_id"
            )
        elif name == "ts":
            # A time made from an epoch number is absolute: the source's zone reads only its wall-clock times.
            # So is a Parquet INT96 time (Spark's and Hive's), which holds UTC by convention.
            absolute = reads_epoch(expression) or any(
                reads_column(expression, c) for c in int96_columns(file)
            )
            zone = "UTC" if absolute else file.timezone
            selects.append(f"{_timestamp(expression, dtype, zone)} as ts")
            selects.append(f"{_tried_text(expression)} as ts_text")
            converted.append("ts")
        elif name == "timezone":
            create_time_zone_names(con)
            selects.append(f"{_zone(expression)} as timezone")
            selects.append(f"{_text(expression)} as timezone_text")
            converted.append("timezone")
        elif name in NUMERIC_CANONICALS:
            selects.append(f"try_cast(({expression}) as double) as {name}")
            # A catalogue row keeps its item when its price does not convert (no price, as before).
            text = _tried_text(expression) if file.kind == "events" else _text(expression)
            selects.append(f"{text} as {name}_text")
            converted.append(name)
        elif name in ID_COLUMNS and dtype in ("DOUBLE", "FLOAT"):
            selects.append(f"{_id_text(expression)} as {name}")
        elif name in float_ids:
            selects.append(f"regexp_replace({_text(expression)}, '\\.0+$', '') as {name}")
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
    with source_zone(con, file.timezone):
        try:
            con.execute(
                f"create or replace temp table {table} as "
                f"select {outer} from (select {', '.join(selects)} from ({source_sql}) as src {kept})"
            )
        except duckdb.Error as error:
            raise _failing_expression(con, file, source, error) from None
    if where is None:
        return 0
    counted = f"select (select count(*) from stg_rows), (select count(*) from {table})"
    n_raw, n_mapped = con.execute(counted).fetchall()[0]
    return n_raw - n_mapped


@contextlib.contextmanager
def source_zone(con: duckdb.DuckDBPyConnection, zone: str) -> Iterator[None]:
    """Within the block, text without a zone is cast to a zoned time in `zone` (the source's local time); the
    session is back in UTC after it."""
    con.execute(f"set TimeZone = '{zone}'")
    try:
        yield
    finally:
        con.execute("set TimeZone = 'UTC'")


def int96_columns(file: SourceFile) -> list[str]:
    """The top-level columns of a Parquet file stored as INT96 timestamps (none for other formats)."""
    if file.format != "parquet":
        return []
    import pyarrow
    import pyarrow.parquet as pq

    try:
        schema = pq.ParquetFile(file.path).schema
    except (OSError, pyarrow.ArrowException):
        return []
    columns = (schema.column(i) for i in range(len(schema)))
    return sorted({c.path.split(".")[0] for c in columns if c.physical_type == "INT96"})


def _refuse_missing_columns(
    con: duckdb.DuckDBPyConnection, file: SourceFile, relation: str = "stg_rows"
) -> None:
    """A FileRefusedError when the spec reads a column this file does not have: a file of another layout (an
    export whose column was renamed) is refused like any file that cannot be read, and the feed's other
    files are still ingested. (A column that no file has is refused before a run starts, check_file_columns.)
    `relation`: `stg_raw` before the feed's list is unnested, its element not yet a column."""
    names = list(_raw_columns(con, relation))
    unread = first_unread(file.feed, names)
    if unread is not None:
        name, _, missing = unread
        raise FileRefusedError(
            f"{file.path}: the expression for {name} = {file.feed.as_written(name)!r} "
            f"({file.feed.origin(name)}) reads {', '.join(missing)}, which this file does not have (its "
            f"columns: {', '.join(names)}){_delimiter_hint(names)}; the file is refused. Give files of this "
            "layout a feed of their own",
            rows_read=staged_rows(con),
        )


def _failing_expression(
    con: duckdb.DuckDBPyConnection, file: SourceFile, source: TypedSource, error: duckdb.Error
) -> FileRefusedError:
    """A refusal naming the expression that fails on a row of the file, and how to quarantine such rows."""
    rows_read = staged_rows(con)
    for name, expression in source.expressions.items():
        try:
            # hash: evaluated on every row (count(CASE ... ELSE 'x' END) is answered without the CASE)
            con.execute(f"select min(hash(({expression}))) from ({source.sql}) as src").fetchall()
        except duckdb.Error as failed:
            detail = str(failed).strip().splitlines()[0][:200]
            text_as_number = re.search(
                r"Could not convert string '(.*)' to (U?(TINY|SMALL|BIG|HUGE)?INT|INT\d+|DOUBLE|FLOAT|DECIMAL)",
                detail,
            )
            advice = (
                f"A condition compares text ({text_as_number.group(1)!r}) with a number: write the number as "
                "text (status = '1'), or compare a column whose values are numbers"
                # the text is a value of the file's, not one the condition writes ('2024-03-01' on epoch seconds)
                if name == WHERE and text_as_number and f"'{text_as_number.group(1)}'" not in expression
                else "A condition compares values of one kind (epoch seconds with a number, not with '2024-03-01'); "
                "compare a column itself (amount > 0) so that a row whose value has the wrong type is "
                "quarantined, where try_cast(...) would filter it"
                if name == WHERE
                else "A JSON value and text mixed (coalesce(item->>'id', item)) read the text as JSON: take the "
                "JSON's text with json_extract_string(item, '$'), or its field with ->> alone"
                if "JSON" in detail
                else "Use try_cast(...) or try_strptime(...) so that such rows are quarantined instead"
            )
            return FileRefusedError(
                f"{file.path}: the expression for {name} = {file.feed.as_written(name)!r} "
                f"({file.feed.origin(name)}) fails on a row of this file: {detail}; the file is refused. {advice}",
                rows_read=rows_read,
            )
    detail = str(error).strip().splitlines()[0][:200]
    return FileRefusedError(f"{file.path}: cannot be mapped: {detail}; the file is refused", rows_read)


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
    fields = [f"{quote_ident(n)} := raw.{quote_ident(n)}" for n in names]
    element, _ = file.feed.unnested()
    if element is not None:  # the element and its place first: a record is cut at MAX_RECORD_CHARS
        fields = ["_element := raw._segflow_element", fields.pop(names.index(element)), *fields]
    record = "to_json(struct_pack(" + ", ".join(fields) + "))"
    # The row of the file: an unnested row's is its record's (the record holds the list and the element).
    row = "raw._segflow_record" if element is not None else "rejected._row"
    lines = ""
    if element is None and has_table(con, "stg_records"):  # a JSON Lines file: its line as it was written
        record, lines = "lines.record", "join stg_records as lines on lines._row = rejected._row"
    con.execute(
        f"""
        create or replace temp table stg_quarantine as
        select _row, reason, record from stg_rejects
        union all
        select {row} as _row, rejected.reason, left(cast({record} as varchar), {MAX_RECORD_CHARS}) as record
        from {prefix}_rejected as rejected
        join stg_rows as raw on raw._row = rejected._row
        {lines}
        order by _row
        """
    )
    con.execute("drop table if exists stg_records")
    # The raw rows are no longer needed: free their memory before deduplication and insert.
    con.execute("drop view stg_rows")
    con.execute("drop view stg_raw")
    con.execute("drop table if exists stg_unnested")
    con.execute("drop table stg_file")
    con.execute(
        f"create or replace temp table {prefix}_duplicates as {load_sql(f'staging/{prefix}_duplicates')}"
    )
    con.execute(f"create or replace temp view {prefix}_new as {load_sql(f'staging/{prefix}_new')}")


def count_file(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> FileOutcome:
    """The outcome with its row counts and top quarantine reasons, from the staged tables."""
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
    # A reason names its value in quotes (`event_type: not in the configured set ('AddToCart')`): counted by
    # kind, each kind shows its most frequent value, which says what to map or fix.
    top_reasons = con.execute(
        """
        with by_value as (
            select
                regexp_replace(reason, ' \\(.*\\)$', '') as kind,
                nullif(regexp_extract(reason, ' \\((''.*'')\\)$', 1), '') as example,
                count(*) as n,
            from stg_quarantine
            group by kind, example
        )
        select kind, sum(n)::bigint as n, first(example order by n desc, example nulls last) as example,
        from by_value
        group by kind order by n desc, kind limit 5
        """
    ).fetchall()
    warnings = outcome.warnings
    if outcome.kind == "items" and n_duplicate:
        n_listed, example = con.execute(
            """
            select count(*), min(item_id) from (
                select mapped.item_id from stg_items_mapped as mapped
                anti join stg_items_rejected as rejected on rejected._row = mapped._row
                group by mapped.item_id
                having count(distinct {'title': title, 'category': category, 'price': price, 'text': text}) > 1
            )
            """
        ).fetchall()[0]
        if n_listed:
            warnings = (
                *warnings,
                f"{n_listed:,} {'item is' if n_listed == 1 else 'items are'} listed more than once with another "
                "title, category, price or text "
                f"(e.g. {example!r}): the last row of each is kept",
            )
    if outcome.kind == "events" and n_duplicate:
        n_changed, example = con.execute(load_sql("staging/stg_events_changed_duplicates")).fetchall()[0]
        if n_changed:
            warnings = (
                *warnings,
                f"{n_changed:,} of its {n_duplicate:,} duplicates repeat an event_id with another user, item, "
                f"type, time, value or quantity (e.g. {example!r}): the first is kept (segflow "
                "never changes a stored event)",
            )
    return replace(
        outcome,
        warnings=warnings,
        rows_read=n_staged + n_quarantined - n_bad + outcome.rows_filtered - outcome.rows_unnested,
        rows_quarantined=n_quarantined,
        rows_duplicate=n_duplicate,
        rows_inserted=n_staged - n_bad - n_duplicate,
        top_reasons=tuple(
            (f"{kind}, e.g. {example}" if example else kind, n) for kind, n, example in top_reasons
        ),
    )


# A day-first or month-first date, as a spreadsheet writes it: `07/03/2024 01:03`, `7.3.2024`.
SLASHED_DATE = re.compile(r"'(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?:[ T](\d{1,2}:\d{2})(:\d{2})?)?'")


def reason_hints(top_reasons: tuple[tuple[str, int], ...], feed: Feed | None) -> list[str]:
    """How to read what the top reasons say could not be read: another encoding, a date's order."""
    hints = []
    for reason, _ in top_reasons:
        if reason.startswith(("malformed line: invalid encoding", "malformed line: not utf-8 text")):
            hints.append(
                "the file is not UTF-8 text: save it as UTF-8, or, if it is Latin-1 (ISO-8859-1), set "
                'encoding = "latin-1" in its feed (a Windows export with a euro sign or curly quotes is not: '
                "save it as UTF-8)"
            )
        dated = SLASHED_DATE.search(reason) if reason.startswith("ts: does not parse") else None
        if dated:
            first, separator, second, _, clock, seconds = dated.groups()
            order = ("%m", "%d") if int(second) > 12 else ("%d", "%m")
            fmt = separator.join([*order, "%Y"]) + (" %H:%M" if clock else "") + (":%S" if seconds else "")
            # The column as the spec's mapping reads it: a name like a keyword (`at`) double-quoted.
            column = feed.columns["ts"] if feed is not None and _is_one_column(feed.columns["ts"]) else "..."
            # Both numbers 12 or less: the order is the file's to say (a day-first shop is the commoner).
            month_first = " (month first: swap %d and %m)" if max(int(first), int(second)) <= 12 else ""
            in_toml = column.replace('"', '\\"')  # as the spec's TOML string writes it
            hints.append(f"for such dates map ts = \"try_strptime({in_toml}, '{fmt}')\"{month_first}")
    return hints


def _is_one_column(expression: str) -> bool:
    return bool(BARE_NAME.fullmatch(expression) or re.fullmatch(r'"[^"]+"', expression))


def describe_rejection(outcome: FileOutcome, max_bad_fraction: float, feed: Feed | None = None) -> str:
    reasons = "; ".join(f"{reason} ({n:,})" for reason, n in outcome.top_reasons)
    reasons += "".join(f"; {hint}" for hint in reason_hints(outcome.top_reasons, feed))
    read = f"{outcome.rows_read:,} read"
    if outcome.rows_unnested:
        read = f"{outcome.rows_read + outcome.rows_unnested:,}, unnested from {read}"
    kept = f" its where does not filter (of {read})" if outcome.rows_filtered else ""
    kept = kept or (f" (unnested from {outcome.rows_read:,} read)" if outcome.rows_unnested else "")
    return (
        f"{outcome.file}: {outcome.rows_quarantined:,} of {outcome.rows_kept:,} rows{kept} are bad "
        f"({outcome.bad_fraction:.1%} > max-bad-fraction {max_bad_fraction:.1%}); top reasons: {reasons}; "
        f"nothing of it was written (it would have been {outcome.counts()})"
    )


def judge_file(outcome: FileOutcome, max_bad_fraction: float, feed: Feed | None = None) -> FileOutcome:
    """A counted file with more than `max_bad_fraction` bad rows is rejected whole."""
    if outcome.bad_fraction > max_bad_fraction:
        return refuse_file(outcome, FileStatus.REJECTED, describe_rejection(outcome, max_bad_fraction, feed))
    return outcome


def prepare_file(
    con: duckdb.DuckDBPyConnection, outcome: FileOutcome, file: SourceFile, event_types: tuple[str, ...],
    max_bad_fraction: float,
) -> FileOutcome:  # fmt: skip
    """Stage, map, check, count and judge one file: the outcome is `staged` (a batch ready to validate and
    write), `rejected` (too many bad rows, or a file that cannot be read: the message says why) or, for an
    empty file, `ingested` with a warning (there is nothing to write, and it must not block the source).
    Its rows read are inserted + duplicate + quarantined + filtered (by the feed's `where`)."""
    try:
        stage_file(con, file)
        outcome = replace(outcome, rows_unnested=stage_rows(con, file))
        outcome = replace(outcome, rows_filtered=map_file(con, file))
        if (
            outcome.rows_filtered
            and outcome.rows_filtered == con.execute("select count(*) from stg_rows").fetchall()[0][0]
        ):
            warning = (
                f"where = {file.feed.as_written(WHERE)!r} ({file.feed.origin(WHERE)}) keeps none of its "
                f"{outcome.rows_filtered:,} rows: nothing of this file is inserted, and it is recorded as ingested "
                "(a changed where does not read it again)"
            )
            outcome = replace(outcome, warnings=(*outcome.warnings, warning))
        check_file(con, file, event_types)
    except EmptyFileError as empty:
        warning = str(empty)
        return replace(outcome, status=FileStatus.INGESTED, message=warning, warnings=(warning,))
    except FileRefusedError as refused:
        drop_staging(con)
        return refuse_file(replace(outcome, rows_read=refused.rows_read), FileStatus.REJECTED, str(refused))
    return judge_file(count_file(con, outcome), max_bad_fraction, file.feed)


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
        names_items = "select exists (select 1 from stg_events_new where item_title is not null or item_category is not null)"
        if con.execute(names_items).fetchall()[0][0]:
            con.execute(load_sql("warehouse/upsert_items_from_events"), {"updated_at": now})
    else:
        con.execute(load_sql("warehouse/upsert_items"), {"updated_at": now})
    return outcome.rows_inserted


def record_manifest(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> FileOutcome:
    """Write the file's manifest row; returns the outcome it recorded. Its message is why the file was
    refused, or else its warnings (an empty file, the validation's warnings), one after the other."""
    if outcome.status in (FileStatus.STAGED, FileStatus.SKIPPED):
        raise ValueError(f"a {outcome.status} file has no manifest row: {outcome.file}")
    message = outcome.message or "; ".join(dict.fromkeys(outcome.warnings)) or None
    con.execute(
        """
        insert into ingest_manifest by name select
            $batch_id as batch_id, $source as source, $file as file, $kind as kind, $sha256 as sha256,
            $rows_read as rows_read, $rows_inserted as rows_inserted, $rows_duplicate as rows_duplicate,
            $rows_quarantined as rows_quarantined, $rows_filtered as rows_filtered,
            $rows_unnested as rows_unnested, $status as status,
            $message as message, $at as ingested_at
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
            "rows_filtered": outcome.rows_filtered,
            "rows_unnested": outcome.rows_unnested,
            "status": outcome.status.value,
            "message": message,
            "at": datetime.now(UTC).replace(tzinfo=None),
        },
    )
    return outcome


# --------------------------------------------------------------------------------------- the connection


def restrict_access(con: duckdb.DuckDBPyConnection, folders: Iterable[Path]) -> None:
    """Let the connection's database read and write only these folders (the source's files and the
    workspace): a spec expression that slipped past the parser still cannot read /etc/passwd or write a
    file elsewhere. DuckDB cannot turn this back on while the database is open: use it on the ingest
    connection only, which is closed when the ingest ends."""
    allowed = sorted({str(Path(folder).resolve()).rstrip("/") + "/" for folder in folders})
    con.execute("set allowed_directories = $folders", {"folders": allowed})
    con.execute("set enable_external_access = false")


def source_folders(files: Iterable[SourceFile]) -> list[Path]:
    """The folders that hold the source's files."""
    return sorted({file.path.parent for file in files})


def report_progress(index: int, n_files: int, rows_read_total: int, outcome: FileOutcome) -> None:
    """One INFO record per file on the `segflow.progress` logger, for a progress bar (file n of N, rows)."""
    logging.getLogger(PROGRESS_LOGGER).info(
        "file %d of %d: %s %s (%s rows read so far)",
        index,
        n_files,
        Path(outcome.file).name,
        outcome.status.value,
        f"{rows_read_total:,}",
        extra={
            "file_index": index,
            "n_files": n_files,
            "rows_read_total": rows_read_total,
            "file": outcome.file,
            "status": outcome.status.value,
        },
    )
