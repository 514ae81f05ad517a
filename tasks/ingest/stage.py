"""Stage: one raw file into the staging tables `stg_raw` (its own columns plus `_row`, the 1-based data row)
and `stg_rejects(_row, reason, record)` (its malformed lines), or a refusal that says why in one line.

A file is refused whole, before any row is read, when it is not text (binary data named .csv), when its
gzip stream is truncated, or when DuckDB cannot read it as its format at all; an empty file is said as such.
CSV is read by DuckDB's parser, which is fast and allows quoted values across lines. A stray quote defeats
it, though: the quoted value never closes and swallows the lines after it into one malformed record. When
that happens the file is read again line by line (`_csv_records`, values read as DuckDB reads them:
`_split_line`), so a stray quote costs its own row only and every later row is read; a quoted value that
closes on a later line into a record of the file's width is still one row.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import itertools
import json
import re
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.ingest.sources import reads_column
from tasks.warehouse import quote_ident

if TYPE_CHECKING:
    from tasks.ingest.files import SourceFile

# A quarantine record or a reason never holds more than this much of a line: binary junk or a runaway
# line must not flood the terminal or the warehouse.
MAX_RECORD_CHARS = 1000
# How much of a file is looked at to tell text from binary.
SNIFF_BYTES = 8192
# Rows handed from Python to DuckDB at once when a file is read line by line.
LINE_CHUNK_ROWS = 50_000
# Read line by line, a quoted value may span lines up to this many characters (DuckDB's own maximum line
# size); a quote still open past it is a stray.
MAX_QUOTED_CHARS = 2_097_152
# DuckDB's error for a CSV whose lines end in two ways (CRLF and LF); its line reader reads any line end.
MIXED_LINE_ENDS = "state machine reached an invalid state"
OPEN_AT_END = "open at the end"  # _split_line: a quoted value goes on past the text
STRAY_CLOSE = (
    "malformed line: stray quote (it closes a quote a line above opened, into no record of the file's width)"
)
UNTERMINATED = (
    "malformed line: unterminated quote (a quoted value opens on this line and no later line closes it into a "
    "record)"
)
MAGIC_NUMBERS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (xlsx, docx or zip)"),
    (b"\x1f\x8b", "gzip data (name the file .gz)"),
    (b"PAR1", "a Parquet file (name it .parquet)"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "an executable"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ", "xz data"),
)
# Control bytes other than tab, newline, carriage return and form feed; text has almost none.
CONTROL_BYTES = frozenset(range(32)) - {9, 10, 12, 13} | {127}
MAX_CONTROL_SHARE = 0.05

STAGING_VIEWS = ("stg_rows", "stg_raw", "stg_values", "stg_events_new", "stg_items_new")
STAGING_TABLES = ("stg_file", "stg_kept", "stg_file_lines", "stg_read", "stg_records", "stg_quarantine", "stg_rejects", "stg_row_gaps", "stg_lines", "stg_reject_errors", "stg_reject_scans",
                  "stg_unnested", "stg_events_mapped", "stg_events_rejected", "stg_events_duplicates", "stg_items_mapped",
                  "stg_items_rejected", "stg_items_duplicates")  # fmt: skip


class FileRefusedError(Exception):
    """The file as a whole cannot be ingested; the message says why in one line and names the file."""

    def __init__(self, message: str, rows_read: int = 0) -> None:
        super().__init__(message)
        self.rows_read = rows_read


class EmptyFileError(Exception):
    """The file holds no data rows; the message says which kind of empty (0 bytes, header only)."""


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for view in STAGING_VIEWS:
        con.execute(f"drop view if exists {view}")
    for table in STAGING_TABLES:
        con.execute(f"drop table if exists {table}")


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def open_text(path: Path, encoding: str) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # noqa: SIM115 - the wrapper owns it
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


def _head(path: Path) -> bytes:
    """The first bytes of the file's content (inflated for .gz, as far as the stream goes)."""
    with open(path, "rb") as handle:
        if not _is_gzip(path):
            return handle.read(SNIFF_BYTES)
        inflater, head = zlib.decompressobj(16 + zlib.MAX_WBITS), b""
        while len(head) < SNIFF_BYTES and not inflater.eof and (chunk := handle.read(1 << 14)):
            head += inflater.decompress(chunk, SNIFF_BYTES - len(head))
        return head


def sniff_file(file: SourceFile) -> None:
    """Refuse a file that is not text of its format (binary data, not gzip); say so when it is empty."""
    path = file.path
    if path.stat().st_size == 0:
        raise EmptyFileError("empty file (0 bytes): nothing to ingest")
    try:
        head = _head(path)
    except zlib.error:
        raise FileRefusedError(
            f"{path}: not a gzip file although it is named .gz; the file is refused"
        ) from None
    if file.format == "parquet":
        if not head.startswith(b"PAR1") and not _is_gzip(path):
            kind = (
                "text"
                if sum(byte in CONTROL_BYTES for byte in head) <= MAX_CONTROL_SHARE * len(head)
                else "data"
            )
            raise FileRefusedError(
                f"{path}: not a Parquet file (it does not start with PAR1; it holds {kind}"
                f"{', e.g. CSV or JSON Lines: name it for its format' if kind == 'text' else ''}); the file is refused"
            )
        return
    if not head.strip():
        if _is_gzip(path) and count_lines(path)[1]:
            raise FileRefusedError(
                f"{path}: the gzip stream is truncated before any row; the file is refused"
            )
        raise EmptyFileError("empty file (no data rows): nothing to ingest")
    utf16 = file.feed.encoding.lower().replace("-", "").replace("_", "").startswith("utf16")
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise FileRefusedError(
            f"{path}: UTF-32 text (it starts with a UTF-32 byte-order mark), which segflow does not read; "
            "convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"
        )
    if not utf16 and head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRefusedError(
            f'{path}: UTF-16 text (it starts with a UTF-16 byte-order mark, as Excel\'s "Unicode text" does), '
            'read as UTF-8; set encoding = "utf-16" for this feed in the spec'
        )
    what = next((name for magic, name in MAGIC_NUMBERS if head.startswith(magic)), None)
    if what is None and not utf16:
        n_control = sum(byte in CONTROL_BYTES for byte in head)
        if n_control > MAX_CONTROL_SHARE * len(head):
            what = f"{n_control:,} control bytes in its first {len(head):,}"
    if what is not None:
        raise FileRefusedError(f"{path}: binary data ({what}), not {file.format} text; the file is refused")


def count_lines(path: Path) -> tuple[int, bool]:
    """The number of complete lines that can be read, and whether the stream ends early (a truncated gzip).
    A gzip stream is inflated piece by piece, so every line before the cut is counted."""
    n_lines = 0
    with open(path, "rb") as handle:
        if not _is_gzip(path):
            while chunk := handle.read(1 << 20):
                n_lines += chunk.count(b"\n")
            return n_lines, False
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while chunk := handle.read(1 << 16):
                while chunk:
                    n_lines += inflater.decompress(chunk).count(b"\n")
                    # A .gz may hold several gzip members one after another.
                    chunk = inflater.unused_data if inflater.eof else b""
                    if chunk:
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error:
            return n_lines, True
        return n_lines, not inflater.eof


def stage_file(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """Load the file into `stg_raw` and its malformed lines into `stg_rejects`; a FileRefusedError (or an
    EmptyFileError) when the file as a whole cannot be read."""
    drop_staging(con)
    # The session is UTC: text without a zone must not take the machine's zone when it is parsed (map_rows
    # reads it in the source's zone).
    con.execute("set TimeZone = 'UTC'")
    sniff_file(file)
    try:
        if file.format == "parquet":
            names = _parquet_names(file)
            _check_names(file, names)
            # The row number from the file, not the table's rowid, which a column named rowid hides; a file
            # with a column named file_row_number (and none named rowid) is numbered by the rowid.
            numbered = "file_row_number" not in {n.lower() for n in names}
            con.execute(
                f"create temp table stg_file as select * from read_parquet($path, file_row_number = {numbered})",
                {"path": str(file.path)},
            )
            con.execute(
                "create temp view stg_raw as "
                + (
                    "select file_row_number + 1 as _row, * exclude (file_row_number) from stg_file"
                    if numbered
                    else "select rowid + 1 as _row, * from stg_file"
                )
            )
            con.execute("create temp table stg_rejects (_row bigint, reason varchar, record varchar)")
        elif file.format == "jsonl":
            _stage_jsonl(con, file)
        else:
            _stage_csv(con, file)
    except duckdb.Error as error:
        drop_staging(con)
        raise _refusal(file, error) from None
    if staged_rows(con) == 0:
        drop_staging(con)
        what = "a Parquet file of no rows" if file.format == "parquet" else "a header but no data rows"
        raise EmptyFileError(f"empty file ({what}): nothing to ingest")


def _parquet_names(file: SourceFile) -> list[str]:
    """The column names of a Parquet file as written (DuckDB renames the second of two that differ only in
    case); none when the schema cannot be read (DuckDB's read then says why)."""
    try:
        return pq.read_schema(file.path).names
    except (OSError, pa.ArrowException):
        return []


def _check_names(file: SourceFile, names: list[str]) -> None:
    """A FileRefusedError for a column named as segflow's row number (`_row`), or for columns that differ only
    in case when the feed reads one of them: names are read without case, so the spec cannot say which."""
    rows = functools.partial(_rows_in, file)
    lowered = {name.lower() for name in names}
    if "_row" in lowered or (file.format == "parquet" and {"rowid", "file_row_number"} <= lowered):
        raise FileRefusedError(
            f"{file.path}: it has a column named "
            f"{'_row' if '_row' in lowered else 'rowid and one named file_row_number'}, segflow's own name for "
            "the row number; the file is refused: rename that column",
            rows_read=rows(),
        )
    spelt: dict[str, list[str]] = {}
    for name in names:
        spelt.setdefault(name.lower(), []).append(name)
    expressions = file.feed.expressions(with_unnest=True).values()
    for same in spelt.values():
        if len(same) > 1 and any(reads_column(e, same[0]) for e in expressions):
            raise FileRefusedError(
                f"{file.path}: its columns {' and '.join(map(repr, same))} differ only in case, and names are "
                "read without case, so the spec cannot tell which it maps; the file is refused: rename one",
                rows_read=rows(),
            )


def _rows_in(file: SourceFile) -> int:
    """The data rows of a file for a refusal: a Parquet file's from its metadata, a CSV's lines after the
    header."""
    if file.format == "parquet":
        try:
            return pq.read_metadata(file.path).num_rows
        except (OSError, pa.ArrowException):
            return 0
    return max(0, count_lines(file.path)[0] - (1 if file.feed.header else 0))


def staged_rows(con: duckdb.DuckDBPyConnection) -> int:
    """The data rows of the staged file: those read (`stg_raw`) and the malformed lines (`stg_rejects`)."""
    return con.execute(
        "select (select count(*) from stg_raw) + (select count(*) from stg_rejects)"
    ).fetchall()[0][0]


def _refusal(file: SourceFile, error: duckdb.Error) -> FileRefusedError:
    """One line that says why DuckDB could not read the file, never a line of the file itself."""
    name = str(file.path)
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    if _is_gzip(file.path):
        n_lines, truncated = count_lines(file.path)
        if truncated:
            n_rows = max(0, n_lines - (1 if file.feed.header and file.format != "jsonl" else 0))
            return FileRefusedError(
                f"{name}: the gzip stream is truncated: it ends after {n_rows:,} readable rows, so the file "
                "is incomplete; the file is refused: export or download it again",
                rows_read=n_rows,
            )
    return FileRefusedError(f"{name}: cannot be read as {file.format}: {detail}; the file is refused")


def _delimiter(file: SourceFile) -> str:
    return file.feed.delimiter or ("\t" if file.format == "tsv" else ",")


def _quote(file: SourceFile) -> str:
    if file.feed.quote is not None:
        return file.feed.quote
    return "" if file.feed.delimiter and len(file.feed.delimiter) > 1 else '"'


def csv_header(file: SourceFile, count_rows: bool = True) -> list[str]:
    """The column names of a CSV or TSV file as ingest reads them: its first line, the feed's
    `file_columns`, or column0, column1, ... without a header; a FileRefusedError for empty or repeated
    names (with the file's rows counted, unless not `count_rows`) or a gzip stream cut before the first line
    ends."""
    if file.feed.file_columns:
        return list(file.feed.file_columns)
    first, names = _first_line(file)
    if not file.feed.header:
        return [f"column{i}" for i in range(len(names))]
    if not names or any(not name for name in names) or len({n.lower() for n in names}) != len(names):
        without_case = (
            " (names are read without case)" if len(set(names)) == len(names) and all(names) else ""
        )
        raise FileRefusedError(
            f"{file.path}: the header line has empty or repeated column names{without_case}: {first[:200]!r}; "
            "the file is refused",
            rows_read=max(0, count_lines(file.path)[0] - 1) if count_rows else 0,
        )
    return names


def _first_line(file: SourceFile) -> tuple[str, list[str]]:
    """The file's first line and the values on it (a BOM and spaces around each stripped)."""
    delimiter = _delimiter(file)
    try:
        with open_text(file.path, file.feed.encoding) as handle:
            first = handle.readline().rstrip("\r\n").lstrip("\ufeff")  # a BOM before a quoted name too
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise FileRefusedError(
            f"{file.path}: the gzip stream is truncated before the first line ends; the file is refused"
        ) from None
    if len(delimiter) == 1 and _quote(file):
        names = next(csv.reader([first], delimiter=delimiter, quotechar=_quote(file)), [])
    else:
        names = first.split(delimiter)
    return first, [name.strip().lstrip("\ufeff") for name in names]


def _stage_csv(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    names = csv_header(file)
    _check_names(file, names)
    if any(name.lower() == "rowid" for name in names):
        _stage_csv_by_lines(con, file, names)  # DuckDB's read numbers rows by the rowid that column hides
    else:
        _read_csv_rows(con, file, names)
    if file.feed.header:
        _set_aside_repeated_headers(con, file, names)


def _set_aside_repeated_headers(con: duckdb.DuckDBPyConnection, file: SourceFile, names: list[str]) -> None:
    """A data row that repeats the file's header line (files joined into one) is a malformed row, not an
    event; one that holds its names in another order refuses the file: the rows after it follow another
    layout and would be read into the wrong columns (helper 40: user and item ids swapped, one `ts` reason
    shown). Names are compared as they are read, without case or a byte-order mark (helper 41: `cat` puts
    the second export's BOM mid-file)."""
    header = [_bare_name(n) for n in _first_line(file)[1]]  # the line's own, whatever file_columns says
    if len(header) != len(names):
        return
    values = "[" + ", ".join(f"{quote_ident(n)}" for n in names) + "]"
    listed = ", ".join("'" + n.replace("'", "''") + "'" for n in header)
    first = f"lower(trim(replace({quote_ident(names[0])}, chr(65279), '')))"
    # Only rows whose first value is one of the names can be a header: a cheap filter before any list.
    candidates = con.execute(
        f"select _row, {values} from stg_raw where {first} in ({listed}) order by _row"
    ).fetchall()
    found = []
    for row, raw in candidates:
        if None not in raw and sorted(bare := [_bare_name(v) for v in raw]) == sorted(header):
            found.append((row, bare == header, raw))
    if not found:
        return
    moved = next((found_row for found_row in found if not found_row[1]), None)
    if moved is not None:
        raise FileRefusedError(
            f"{file.path}: row {moved[0]:,} is a header with the columns in another order "
            f"({','.join(v.strip().lstrip(chr(65279)) for v in moved[2])}), so the file joins exports of two "
            "layouts and the rows after it would be read into the wrong columns; the file is refused: split it "
            "where the second header starts",
            rows_read=staged_rows(con),
        )
    rows = ", ".join(str(row) for row, _, _ in found)
    con.execute(
        f"""
        insert into stg_rejects
        select _row, 'malformed line: the header line again (files joined into one)',
            array_to_string({values}, $delimiter)
        from stg_raw where _row in ({rows})
        """,
        {"delimiter": _delimiter(file)},
    )
    con.execute(f"create temp table stg_kept as select * from stg_raw where _row not in ({rows})")
    con.execute("drop view stg_raw")
    con.execute("drop table stg_file")
    con.execute("alter table stg_kept rename to stg_file")
    con.execute("create temp view stg_raw as select * from stg_file")


def _bare_name(text: str) -> str:
    """A column name as names are compared: without a byte-order mark, spaces around or case."""
    return text.replace("\ufeff", "").strip().lower()


def _read_csv_rows(con: duckdb.DuckDBPyConnection, file: SourceFile, names: list[str]) -> None:
    columns = "{" + ", ".join(f"'{n.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for n in names) + "}"
    try:
        _read_csv(con, file, columns)
    except duckdb.InvalidInputException as error:
        if MIXED_LINE_ENDS not in str(error):
            raise
        # Line ends of two kinds (a CRLF export with one LF line, files of two systems joined): DuckDB refuses
        # the whole file; read line by line, any line end ends a line.
        _stage_csv_by_lines(con, file, names)
        return
    # A quoted value that never closes swallows the lines after it (DuckDB reports one malformed record for
    # all of them, or a line over its maximum size), and DuckDB can then name the wrong line in its rejects (a
    # quote error on a line without a quote: the row before the stray; a legitimate two-line value after it
    # was two rows of missing columns): only reading line by line finds the rows and the true lines. A quote
    # error DuckDB keeps to its own line (`"u1"x`) is left to DuckDB's read.
    swallowed = con.execute(
        """
        select count(*) from stg_reject_errors
        where error_type = 'LINE SIZE OVER MAXIMUM'
            or regexp_matches(trim(csv_line, chr(13) || chr(10)), '[\r\n]')
            or (error_type = 'UNQUOTED VALUE' and not contains(csv_line, $quote))
        """,
        {"quote": _quote(file)},
    ).fetchall()[0][0]
    # A quote opened in the header swallows the whole file into it, and text DuckDB cannot decode as it was
    # told (UTF-16 big-endian) reads as no rows: both look empty. Read line by line, as Python decodes. And
    # DuckDB numbers its rejects counting empty lines, which are no rows: with both, the numbers would not
    # follow the file's order.
    if (
        swallowed
        or (_n_staged(con) == 0 and has_data_line(file))
        or _lines_unaccounted(con, file, names)
        or (_n_rejected(con) and _has_empty_line(file))
    ):
        _stage_csv_by_lines(con, file, names)
        return
    offset = 1 if file.feed.header else 0
    con.execute(
        f"""
        create temp table stg_rejects as
        select
            line - {offset} as _row,
            left('malformed line: ' || lower(arg_min(error_type, coalesce(column_idx, 0))) || ' ('
                -- worded as the line reader words it, so one kind of line has one reason
                || regexp_replace(arg_min(error_message, coalesce(column_idx, 0)),
                    '^Expected Number of Columns: (\\d+) Found: (\\d+)$', 'expected \\1, found \\2')
                || ')', 300) as reason,
            left(any_value(csv_line), {MAX_RECORD_CHARS}) as record,
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


def _read_csv(con: duckdb.DuckDBPyConnection, file: SourceFile, columns: str) -> None:
    """DuckDB's read of the file into `stg_file`, its malformed lines into `stg_reject_errors`."""
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
            "quote": _quote(file),
            "encoding": file.feed.encoding,
        },
    )


def _lines_unaccounted(con: duckdb.DuckDBPyConnection, file: SourceFile, names: list[str]) -> bool:
    """Whether the read accounts for fewer lines than the file has: a quote that never closes on its line
    can join it to the next one into one record of the right width, and DuckDB then names another line in its
    rejects (helper 33: `"[""C""` joined the next order, and both vanished). A line is accounted for by a
    record, by a line break inside a record's value (a quoted value over several lines), or by a reject."""
    header = 1 if file.feed.header else 0
    counted = "select (select count(*) from stg_file) + (select count(distinct line) from stg_reject_errors)"
    if con.execute(counted).fetchall()[0][0] >= count_lines(file.path)[0] - header:
        return False  # line ends counted fast: the usual file stops here
    breaks = " + ".join(
        f"coalesce(length({quote_ident(n)}) - length(replace({quote_ident(n)}, chr(10), '')), 0)"
        for n in names
    )
    accounted = con.execute(
        f"""
        select
            (select count(*) + coalesce(sum({breaks or "0"}), 0) from stg_file)
            + (select count(*) + coalesce(sum(length(csv_line) - length(replace(csv_line, chr(10), ''))), 0)
               from (select line, any_value(csv_line) as csv_line from stg_reject_errors group by line))
        """
    ).fetchall()[0][0]
    opener = gzip.open if _is_gzip(file.path) else open
    try:
        with opener(file.path, "rb") as handle:  # bytes: a line DuckDB cannot read still counts
            n_lines = sum(1 for line in handle if line.strip())
    except (OSError, EOFError):  # a stream cut short: its refusal is told elsewhere
        return False
    return accounted < n_lines - header  # lines with text: blank lines are no rows


def _n_staged(con: duckdb.DuckDBPyConnection) -> int:
    """Rows read and lines rejected by the read just done."""
    return con.execute(
        "select (select count(*) from stg_file) + (select count(*) from stg_reject_errors)"
    ).fetchall()[0][0]


def _n_rejected(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("select count(*) from stg_reject_errors").fetchall()[0][0]


def _has_empty_line(file: SourceFile) -> bool:
    """Whether the file has an empty line (perhaps inside a quoted value, which is no matter here)."""
    try:
        with open_text(file.path, file.feed.encoding) as handle:
            return any(line in ("\n", "\r\n", "\r") for line in handle)
    except (OSError, EOFError, zlib.error):  # a stream cut short: its refusal is told elsewhere
        return False


def has_data_line(file: SourceFile) -> bool:
    """Whether a CSV has a line after its header with anything but a line end: DuckDB reads even a line of
    spaces as a row (a malformed one)."""
    with open_text(file.path, file.feed.encoding) as handle:
        lines = iter(handle)
        if file.feed.header:
            next(lines, None)
        return any(line.rstrip("\r\n") for line in lines)


def hive_partitions(path: Path) -> dict[str, str]:
    """The columns DuckDB adds to a file under `key=value` folders (hive partitioning), with their values."""
    return dict(part.split("=", 1) for part in path.parent.parts if "=" in part)


@functools.cache
def _field_pattern(delimiter: str, quote: str) -> re.Pattern[str]:
    """One value and what ends it (a delimiter, or the end): quoted (one space before it and any after it
    allowed, as DuckDB does; a doubled quote inside it a quote) or unquoted (not starting with a quote, a
    quote inside it a character)."""
    d, q = re.escape(delimiter), re.escape(quote)
    return re.compile(
        rf" ?{q}(?P<quoted>(?:[^{q}]|{q}{q})*+){q} *(?P<end>{d}|\Z)"
        rf"|(?! ?{q})(?P<plain>(?:(?!{d}).)*)(?P<end2>{d}|\Z)",
        re.DOTALL,
    )


def _split_line(text: str, delimiter: str, quote: str) -> tuple[list[str] | None, str | None]:
    """The fields of one record (a line, or lines joined inside a quoted value), or None and why it is
    malformed (`OPEN_AT_END` when a quoted value is still open where the text ends). Read as DuckDB reads
    CSV: a value may be quoted after one space and followed by spaces, a doubled quote inside a quoted value is
    a quote, a quote inside an unquoted value is a character (`27" TV`), and a delimiter may be several
    characters (`||`)."""
    if not quote or quote not in text:
        return text.split(delimiter), None
    pattern, fields, at = _field_pattern(delimiter, quote), [], 0
    while (match := pattern.match(text, at)) is not None:
        quoted = match["quoted"]
        fields.append(match["plain"] if quoted is None else quoted.replace(quote * 2, quote))
        if not (match["end"] or match["end2"]):  # the end of the text
            return fields, None
        at = match.end()
    q = re.escape(quote)
    closed = re.match(rf" ?{q}(?:[^{q}]|{q}{q})*+{q}", text[at:])  # possessive: `"a""` is still open
    if closed is None:
        return None, OPEN_AT_END
    after = text[at + closed.end() : at + closed.end() + 20]
    return None, f"malformed line: bad quoting (text after the closing quote: {after!r})"


def _csv_records(
    lines: Iterator[str], delimiter: str, quote: str, width: int
) -> Iterator[tuple[str, list[str] | None, str | None]]:
    """Each record of a CSV's lines (line ends kept inside it, trimmed at its end), its fields (whatever
    their number) or None and why it is malformed. A line that leaves a quoted value open is joined to the
    lines after it up to the one that closes the value (the lines between are read as quoted text); what the
    joined text is decides what it was:
    - fields of the file's width: one record, a value over several lines;
    - a quote error after the close (`"i1,view` closed by `"two`), or no close within MAX_QUOTED_CHARS or
      before the end: the quote was a stray, the line a malformed record of its own, and the lines after it
      are read again as their own (helper 36: a stray used to cost every multi-line value after it);
    - fields of another width: when the lines between are each a record of the file's width, the opening and
      the closing quotes were both strays (each line malformed, the lines between read again); when there
      are none and the closing line read alone opens a value at its end, the first quote was a stray (helper
      39: the rest of that value was read as an event); otherwise the joined lines are one record of the
      wrong width (a multi-line value in a row with a column too many, helper 37: its closing line read
      alone made an event of a user `mom"` the file does not have).
    A quote is counted as DuckDB reads it (`_split_line`): a line whose quotes are characters (`27" TV`) opens
    nothing."""
    pending: deque[str] = deque()

    def take() -> str | None:
        return pending.popleft() if pending else next(lines, None)

    while (line := take()) is not None:
        text = line.rstrip("\r\n")
        fields, why = _split_line(text, delimiter, quote)
        if why != OPEN_AT_END:
            yield text, fields, why
            continue
        taken, size = [line], len(line)
        while size <= MAX_QUOTED_CHARS and (more := take()) is not None:
            taken.append(more)
            size += len(more)
            if quote not in more.replace(quote * 2, ""):  # inside the value, only doubled quotes: still open
                continue
            joined = "".join(taken).rstrip("\r\n")
            fields, why = _split_line(joined, delimiter, quote)
            if why != OPEN_AT_END:
                break
        else:  # no close before the end or the limit: a stray
            fields, why = None, UNTERMINATED
        if fields is not None and len(fields) == width:
            yield joined, fields, None
            continue
        inner, closing = [t.rstrip("\r\n") for t in taken[1:-1]], taken[-1].rstrip("\r\n")
        between = [t for t in inner if t.strip()]
        if fields is not None and not between and _split_line(closing, delimiter, quote)[1] == OPEN_AT_END:
            fields = None  # the closing line alone opens a value: the first quote was a stray
        if fields is not None and not (
            between and all(_is_record(t, delimiter, quote, width) for t in between)
        ):
            yield joined, fields, None  # one record, of the wrong width
            continue
        yield text, None, UNTERMINATED
        if fields is None:
            pending.extendleft(reversed(taken[1:]))
            continue
        yield from ((t, *_split_line(t, delimiter, quote)) for t in inner)  # both strays: the lines between
        yield closing, None, STRAY_CLOSE


def _is_record(text: str, delimiter: str, quote: str, width: int) -> bool:
    """Whether one line is a record of `width` fields."""
    fields, why = _split_line(text, delimiter, quote)
    return why is None and fields is not None and len(fields) == width


def _stage_csv_by_lines(con: duckdb.DuckDBPyConnection, file: SourceFile, names: list[str]) -> None:
    """Read the file again, each record one row: a physical line, or the lines a quoted value spans (an empty
    line is no row and has no number, as in DuckDB's read)."""
    drop_staging(con)
    delimiter, quote = _delimiter(file), _quote(file)
    # The columns of `key=value` folders, which DuckDB's own read adds (a file column of that name wins).
    taken = {n.lower() for n in names}
    hive = {key: value for key, value in hive_partitions(file.path).items() if key.lower() not in taken}
    con.execute(
        "create temp table stg_file (_row bigint, "
        + ", ".join(f"{quote_ident(n)} varchar" for n in [*names, *hive])
        + ")"
    )
    con.execute("create temp table stg_rejects (_row bigint, reason varchar, record varchar)")
    rows: list[list[int | str | None]] = []
    rejects: list[list[int | str | None]] = []

    def flush() -> None:
        _append(con, "stg_file", rows)
        _append(con, "stg_rejects", rejects)
        rows.clear()
        rejects.clear()

    with open_text(file.path, file.feed.encoding) as handle:
        lines = iter(handle)
        if file.feed.header:
            next(lines, None)
        else:  # a byte-order mark is no part of the first value
            lines = itertools.chain([next(lines, "").removeprefix("\ufeff")], lines)
        number = 0
        for text, fields, why in _csv_records(lines, delimiter, quote, len(names)):
            if not text:  # an empty line is no row; one of spaces is a malformed row, as in DuckDB's read
                continue
            number += 1
            if fields is not None and len(fields) == len(names) + 1 and fields[-1] == "":
                fields = fields[:-1]  # a delimiter ending the line, as DuckDB reads it
            if fields is not None and len(fields) != len(names):
                kind = "too many columns" if len(fields) > len(names) else "missing columns"
                fields, why = None, f"malformed line: {kind} (expected {len(names)}, found {len(fields)})"
            if fields is None:
                rejects.append([number, why, text[:MAX_RECORD_CHARS]])
            else:
                rows.append([number, *(field if field != "" else None for field in fields), *hive.values()])
            if len(rows) >= LINE_CHUNK_ROWS or len(rejects) >= LINE_CHUNK_ROWS:
                flush()
    flush()
    con.execute("create temp view stg_raw as select * from stg_file")


def _append(con: duckdb.DuckDBPyConnection, table: str, rows: list[list[int | str | None]]) -> None:
    """Append rows (a row number, then text) to a staging table, handed over through Arrow."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    chunk = pa.table(
        {
            f"c{i}": pa.array(values, type=pa.int64() if i == 0 else pa.large_string())
            for i, values in enumerate(columns)
        }
    )
    con.register("stg_chunk", chunk)
    try:
        con.execute(f"insert into {table} select * from stg_chunk")
    finally:
        con.unregister("stg_chunk")


def whole_number_text(x: str) -> str:
    """SQL: the integer text of the double `x` when it is a whole number (1.0 -> "1", 1e2 -> "100"), else
    null. One rule for ids written as floats, in Parquet (tasks/ingest/files.py `_id_text`) and JSON Lines."""
    return f"case when abs({x}) < 1e38 and {x} = trunc({x}) then cast(cast({x} as hugeint) as varchar) end"


# The text of a JSON value, as a key's column holds it: a string's characters, an object's JSON, a number's
# digits; a number with a fraction or an exponent that is whole (1.0, 1e2) as the whole number ("1", "100"),
# so that an id is one id whether written by a typed writer (1) or by pandas (1.0: an int column with a
# missing value is float64), as Parquet float ids are read.
JSON_TEXT = f"""
create or replace temp macro segflow_json_text(j) as
    coalesce(
        case when json_type(j) = 'DOUBLE' then {whole_number_text("j::double")} end,
        json_extract_string(j, '$')
    )
"""


def _stage_jsonl(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """Each line a row: a column per key of the file's objects (keys that differ only in case are one
    column, as DuckDB reads names: a line that gives them two values is malformed), a line that is not a JSON
    object a malformed row. Lines are numbered as CSV rows are (an empty line is no row), and each keeps its
    text as the record a quarantined row shows (`stg_records`)."""
    try:
        _read_json_lines(con, file)
    except duckdb.Error as error:
        # Lines DuckDB's line reader refuses the whole file for (line ends of two kinds, a byte that is not
        # text in the encoding, a line over 2 MB): read them in Python, each bad line a malformed row.
        drop_staging(con)
        try:
            _read_json_lines_by_python(con, file)
        except (OSError, EOFError, zlib.error):
            raise _refusal(file, error) from None
    groups: dict[str, list[str]] = {}
    for (key,) in con.execute(
        """
        select json_key from (
            select unnest(json_keys(line)) as json_key, _row from stg_lines where is_object
        ) group by json_key order by min(_row), json_key
        """
    ).fetchall():
        if key:  # an empty key cannot be named by a spec; the line keeps it in its record
            groups.setdefault(key.lower(), []).append(key)
    if not groups:
        n_lines = con.execute("select count(*) from stg_lines").fetchall()[0][0]
        raise FileRefusedError(f"{file.path}: no JSON object lines found; the file is refused", n_lines)

    # Each object line parsed once: the values of every key, as JSON, in `_values` (objects only: a line that
    # is not JSON would make the whole read fail); a key's column is its value's text (`JSON_TEXT`).
    spellings = [key for keys in groups.values() for key in keys]
    paths = ", ".join(
        "'" + ('$."' + k.replace("\\", "\\\\").replace('"', '\\"') + '"').replace("'", "''") + "'"
        for k in spellings
    )
    con.execute(JSON_TEXT)
    con.execute(
        "create or replace temp view stg_values as select *, "
        f"json_extract(case when is_object then line end, [{paths}]) as _values from stg_lines"
    )

    def extract(key: str) -> str:
        return f"segflow_json_text(_values[{spellings.index(key) + 1}])"

    columns = [
        f"{extract(keys[0]) if len(keys) == 1 else 'coalesce(' + ', '.join(map(extract, keys)) + ')'} "
        f"as {quote_ident(keys[0])}"
        for keys in groups.values()
    ]
    # Why an object line is malformed: keys that differ only in case with two values on it; null when it is not.
    whens = " ".join(
        f"when len(list_distinct([{', '.join(map(extract, keys))}])) > 1 then 'malformed line: keys "
        + " and ".join(f"'{k}'" for k in keys).replace("'", "''")
        + " differ only in case and hold different values (names are read without case)'"
        for keys in groups.values()
        if len(keys) > 1
    )
    clash = f"case {whens} end" if whens else "null"
    good = f"is_object and {clash} is null"
    con.execute(
        f"create temp table stg_file as select _row, {', '.join(columns)} from stg_values where {good}"
    )
    con.execute("create temp view stg_raw as select * from stg_file")
    con.execute(
        f"""
        create temp table stg_rejects as
        select _row, coalesce(bad, {clash}, 'malformed line: not a JSON object') as reason,
            left(line, {MAX_RECORD_CHARS}) as record,
        from stg_values
        where not ({good})
        """
    )
    con.execute(
        f"create temp table stg_records as select _row, left(line, {MAX_RECORD_CHARS}) as record "
        f"from stg_values where {good}"
    )
    con.execute("drop view stg_values")
    con.execute("drop table stg_lines")


def _read_json_lines(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """`stg_read(_row, line, bad)` by DuckDB's line reader, then `stg_lines`."""
    con.execute(
        """
        create temp table stg_file_lines as
        select line from read_csv(
            $path, columns = {'line': 'VARCHAR'}, header = false, auto_detect = false,
            delim = chr(1), quote = '', escape = '', encoding = $encoding
        )
        """,
        {"path": str(file.path), "encoding": file.feed.encoding},
    )
    con.execute(
        "create temp table stg_read as select row_number() over (order by rowid) as _row, line, "
        "null::varchar as bad from stg_file_lines where line is not null"
    )
    con.execute("drop table stg_file_lines")
    _mark_objects(con)


def _mark_objects(con: duckdb.DuckDBPyConnection) -> None:
    """`stg_lines`: the lines read (`stg_read(_row, line, bad)`), each with whether it is a JSON object."""
    con.execute(
        """
        create temp table stg_lines as
        select _row, line, bad,
            bad is null and case when json_valid(line) then json_type(line) = 'OBJECT' else false end
                as is_object,
        from stg_read
        """
    )
    con.execute("drop table stg_read")


def _json_pieces(text: str) -> list[str]:
    """A line, or the lines a lone carriage return ends inside it: JSON allows a CR between tokens, so the
    line is split there only when it is no JSON as a whole and each piece is (helper 41: two events)."""
    if "\r" not in text:
        return [text]
    try:
        json.loads(text)
        return [text]
    except ValueError:
        pass
    pieces = [piece for piece in text.split("\r") if piece]
    for piece in pieces:
        try:
            json.loads(piece)
        except ValueError:
            return [text]
    return pieces


def _read_json_lines_by_python(con: duckdb.DuckDBPyConnection, file: SourceFile) -> None:
    """`stg_read` in Python, then `stg_lines`: any line end ends a line, and a line undecodable in the
    encoding is a malformed row."""
    encoding = file.feed.encoding
    con.execute("create temp table stg_read (_row bigint, line varchar, bad varchar)")
    rows: list[list[int | str | None]] = []
    raw = gzip.open(file.path, "rb") if _is_gzip(file.path) else open(file.path, "rb")  # noqa: SIM115
    with io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="\n") as handle:
        number = 0
        for i, line in enumerate(handle):
            text = line.rstrip("\r\n")
            if i == 0:
                text = text.removeprefix("\ufeff")
            if not text:
                continue
            for piece in _json_pieces(text):
                number += 1
                bad = None
                if any("\udc80" <= char <= "\udcff" for char in piece):
                    piece = piece.encode(encoding, "surrogateescape").decode(encoding, "replace")
                    bad = f"malformed line: not {encoding} text (a byte the encoding does not have)"
                rows.append([number, piece, bad])
            if len(rows) >= LINE_CHUNK_ROWS:
                _append(con, "stg_read", rows)
                rows.clear()
    _append(con, "stg_read", rows)
    _mark_objects(con)
