"""Staging one file, without Prefect: what is refused whole (and how it is said), what is empty, and how a
stray quote is read around."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.files import SourceFile
from tasks.ingest.sources import Feed
from tasks.ingest.stage import (
    EmptyFileError,
    FileRefusedError,
    _stage_csv_by_lines,
    count_lines,
    csv_header,
    stage_file,
)

HEADER = "user,item,kind,day\n"
ROWS = "".join(f"u{i},i{i},view,2024-01-01\n" for i in range(50))


def source_file(path: Path) -> SourceFile:
    feed = Feed(kind="events", path=str(path), columns={"user_id": "user"})
    return SourceFile(source="s", feed=feed, path=path, format=feed.format_for(path))


def staged(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(_row, user) of the rows read, and (_row, reason) of the malformed lines."""
    con = duckdb.connect()
    try:
        stage_file(con, source_file(path))
        rows = con.execute("select _row, user from stg_raw order by _row").fetchall()
        rejects = con.execute("select _row, reason from stg_rejects order by _row").fetchall()
        return rows, rejects
    finally:
        con.close()


def refusal(path: Path) -> FileRefusedError:
    with pytest.raises(FileRefusedError) as raised:
        staged(path)
    return raised.value


def test_a_small_truncated_gzip_is_refused_not_taken_for_empty(tmp_path):
    whole = gzip.compress((HEADER + ROWS).encode(), mtime=0)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "stub.csv.gz").write_bytes(whole[:12])
    assert "the gzip stream is truncated" in str(refusal(tmp_path / "cut.csv.gz"))
    assert str(refusal(tmp_path / "stub.csv.gz")).endswith(
        "stub.csv.gz: the gzip stream is truncated before any row; the file is refused"
    )


def test_the_rows_of_a_truncated_gzip_before_the_cut_are_counted(tmp_path):
    text = HEADER + ROWS * 40
    whole = gzip.compress(text.encode(), mtime=0)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) * 3 // 4])
    n_lines, truncated = count_lines(tmp_path / "cut.csv.gz")
    assert truncated and 0 < n_lines < text.count("\n")
    error = refusal(tmp_path / "cut.csv.gz")
    assert error.rows_read == n_lines - 1
    assert f"it ends after {n_lines - 1:,} readable rows" in str(error)


def test_a_complete_multi_member_gzip_is_not_truncated(tmp_path):
    (tmp_path / "two.csv.gz").write_bytes(gzip.compress(HEADER.encode()) + gzip.compress(ROWS.encode()))
    assert count_lines(tmp_path / "two.csv.gz") == (51, False)
    rows, rejects = staged(tmp_path / "two.csv.gz")
    assert len(rows) == 50 and rejects == []


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "a PNG image"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 40, "a PDF document"),
        (b"PK\x03\x04" + bytes(range(256)) * 40, "a ZIP archive (xlsx, docx or zip)"),
        (bytes(range(256)) * 40, "928 control bytes in its first 8,192"),
    ],
)
def test_binary_data_is_named_in_one_line_and_never_echoed(tmp_path, content, what):
    (tmp_path / "e.csv").write_bytes(content)
    message = str(refusal(tmp_path / "e.csv"))
    assert message == f"{tmp_path / 'e.csv'}: binary data ({what}), not csv text; the file is refused"


def test_utf16_text_without_its_encoding_is_named_with_the_setting_to_use(tmp_path):
    """Excel's "Unicode text" is UTF-16 with a byte-order mark: it was refused as binary data."""
    (tmp_path / "e.csv").write_bytes(b"\xff\xfe" + (HEADER + ROWS).encode("utf-16-le"))
    assert str(refusal(tmp_path / "e.csv")) == (
        f"{tmp_path / 'e.csv'}: UTF-16 text (it starts with a UTF-16 byte-order mark, as Excel's \"Unicode "
        'text" does), read as UTF-8; set encoding = "utf-16" for this feed in the spec'
    )


def test_utf32_text_is_told_apart_from_utf16(tmp_path):
    """Its byte-order mark starts like UTF-16's: the advice to set utf-16 garbled every name (helper 29)."""
    (tmp_path / "e.csv").write_bytes((HEADER + ROWS).encode("utf-32"))
    assert str(refusal(tmp_path / "e.csv")) == (
        f"{tmp_path / 'e.csv'}: UTF-32 text (it starts with a UTF-32 byte-order mark), which segflow does not "
        "read; convert it to UTF-8 (iconv -f UTF-32 -t UTF-8)"
    )


def test_a_nul_inside_one_id_is_not_binary(tmp_path):
    (tmp_path / "e.csv").write_text(HEADER + "u\x001,i1,view,2024-01-01\n" + ROWS)
    rows, _ = staged(tmp_path / "e.csv")
    assert rows[0] == (1, "u\x001") and len(rows) == 51


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file (0 bytes): nothing to ingest"),
        ("\n\n  \n", "empty file (no data rows): nothing to ingest"),
        (HEADER, "empty file (a header but no data rows): nothing to ingest"),
    ],
)
def test_an_empty_file_is_said_as_such(tmp_path, content, message):
    (tmp_path / "e.csv").write_text(content)
    with pytest.raises(EmptyFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        staged(tmp_path / "e.csv")


def test_a_stray_quote_is_one_malformed_row_and_the_rows_after_it_keep_their_numbers(tmp_path):
    lines = ROWS.splitlines(keepends=True)
    lines[9] = '"' + lines[9]  # data row 10
    lines[29] = lines[29].replace(",i29,", ',"i29,')  # data row 30
    (tmp_path / "e.csv").write_text(HEADER + "".join(lines))
    rows, rejects = staged(tmp_path / "e.csv")
    assert [n for n, _ in rows] == [n for n in range(1, 51) if n not in (10, 30)]
    assert rows[10] == (12, "u11")
    unterminated = (
        "malformed line: unterminated quote (a quoted value opens on this line and no later line closes it into a "
        "record)"
    )
    assert rejects == [(10, unterminated), (30, unterminated)]


def test_a_line_read_around_a_stray_quote_keeps_quoted_fields_and_counts_columns(tmp_path):
    text = HEADER + '"u0,i0,view,2024-01-01\n"u,1",i1,view,2024-01-01\nu2,i2,view\nu3,i3,view,2024-01-01,x\n'
    (tmp_path / "e.csv").write_text(text)
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(2, "u,1")]
    assert [(n, reason.split(" (")[0]) for n, reason in rejects] == [
        (1, "malformed line: unterminated quote"),
        (3, "malformed line: missing columns"),
        (4, "malformed line: too many columns"),
    ]


def test_a_quote_that_closes_on_the_next_line_loses_neither_line(tmp_path):
    """Helper 33 (F10): `"[""C""` never closed on its line; DuckDB joined it to the next line into one record
    of the right width, named another line in its rejects, and both orders vanished (4 rows read of 5)."""
    text = (
        "id,user,at,products\n"
        'm1,u1,2024-03-01,"[""A"",""B""]"\n'
        'm2,u2,2024-03-01,"[""C""\n'
        'm3,u3,2024-03-01,"[""D"",""E""]"\n'
        'm4,u4,2024-03-01,"[""G""]",extra\n'
        "m5,u5,2024-03-01,H\n"
    )
    (tmp_path / "e.csv").write_text(text)
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(1, "u1"), (3, "u3"), (5, "u5")]
    assert [(n, reason.split(" (")[0]) for n, reason in rejects] == [
        (2, "malformed line: unterminated quote"),
        (4, "malformed line: too many columns"),
    ]


def test_a_quoted_value_over_several_lines_is_one_row(tmp_path):
    (tmp_path / "e.csv").write_text(
        HEADER + 'u0,i0,view,2024-01-01\n"u\n1",i1,view,2024-01-01\n\nu2,i2,view,2024-01-01\n'
    )
    assert staged(tmp_path / "e.csv") == ([(1, "u0"), (2, "u\n1"), (3, "u2")], [])


def test_a_file_whose_header_repeats_a_name_is_refused_with_its_row_count(tmp_path):
    (tmp_path / "e.csv").write_text("user,user,kind,day\n" + ROWS)
    error = refusal(tmp_path / "e.csv")
    assert str(error).endswith(
        "e.csv: the header line has empty or repeated column names: 'user,user,kind,day'; the file is refused"
    )
    assert error.rows_read == 50


def test_a_jsonl_file_without_objects_is_refused(tmp_path):
    (tmp_path / "e.jsonl").write_text("[1, 2]\nnot json\n")
    error = refusal(tmp_path / "e.jsonl")
    assert str(error).endswith("e.jsonl: no JSON object lines found; the file is refused")
    assert error.rows_read == 2


def test_quote_empty_reads_quotes_in_a_tsv_as_text(tmp_path):
    path = tmp_path / "artists.tsv"
    path.write_text('id\tname\n1\t"Weird Al" Yankovic\n2\tRoyce da 5\'9"\n3\tThe "K"\n')

    def read(quote: str | None) -> tuple[list[tuple], list[tuple]]:
        feed = Feed(kind="items", path=str(path), columns={"item_id": "id"}, quote=quote)
        con = duckdb.connect()
        try:
            stage_file(con, SourceFile(source="s", feed=feed, path=path, format="tsv"))
            rows = con.execute("select _row, name from stg_raw order by _row").fetchall()
            return rows, con.execute("select _row, reason from stg_rejects").fetchall()
        finally:
            con.close()

    assert read("") == ([(1, '"Weird Al" Yankovic'), (2, "Royce da 5'9\""), (3, 'The "K"')], [])
    # With CSV quoting (the default) the value that starts with a quote cannot be read: its row is malformed.
    rows, rejects = read(None)
    assert [row for row, _ in rows] == [2, 3]
    assert [(row, reason.split(" (")[0]) for row, reason in rejects] == [
        (1, "malformed line: unquoted value")
    ]


def test_a_quote_opened_in_the_header_does_not_swallow_the_file(tmp_path):
    """DuckDB read the whole file into a header whose last name opens a quote, and the file was `ingested`
    as empty: 0 of its rows, no reason (helper 21). It is read line by line instead."""
    (tmp_path / "e.csv").write_text('user,item,kind,"day\n' + ROWS)
    rows, rejects = staged(tmp_path / "e.csv")
    assert len(rows) == 50 and rows[:2] == [(1, "u0"), (2, "u1")] and rejects == []


def test_utf16_big_endian_text_is_read_as_python_decodes_it(tmp_path):
    """DuckDB read a big-endian UTF-16 file (with its BOM) as no rows: `ingested`, empty (helper 21)."""
    path = tmp_path / "e.csv"
    path.write_bytes(b"\xfe\xff" + (HEADER + ROWS).encode("utf-16-be"))
    feed = Feed(kind="events", path=str(path), columns={"user_id": "user"}, encoding="utf-16")
    con = duckdb.connect()
    stage_file(con, SourceFile(source="s", feed=feed, path=path, format="csv"))
    assert con.execute("select count(*), min(user), max(day) from stg_raw").fetchall() == [
        (50, "u0", "2024-01-01")
    ]


def test_a_bom_before_a_quoted_header_name_is_not_part_of_it(tmp_path):
    """The first column was named `"user"`, quotes included, and a spec reading `user` failed (helper 21)."""
    (tmp_path / "e.csv").write_bytes(b'\xef\xbb\xbf"user","item","kind","day"\n' + ROWS.encode())
    con = duckdb.connect()
    stage_file(con, source_file(tmp_path / "e.csv"))
    assert [name for name, *_ in con.execute("describe stg_raw").fetchall()] == [
        "_row",
        "user",
        "item",
        "kind",
        "day",
    ]


def test_a_hive_folder_gives_its_column_when_the_file_is_read_line_by_line(tmp_path):
    """A stray quote makes ingest read the file again line by line, which lost DuckDB's `day` column of a
    `day=...` folder: the expression that read it failed (helper 21)."""
    folder = tmp_path / "day=2024-03-01"
    folder.mkdir()
    lines = ROWS.splitlines(keepends=True)
    lines[4] = '"' + lines[4]
    (folder / "e.csv").write_text(
        "user,item,kind\n" + "".join(line.rsplit(",", 1)[0] + "\n" for line in lines)
    )
    con = duckdb.connect()
    stage_file(con, source_file(folder / "e.csv"))
    assert con.execute("select count(*), min(day), max(day) from stg_raw").fetchall() == [
        (49, "2024-03-01", "2024-03-01")
    ]
    assert con.execute("select _row from stg_rejects").fetchall() == [(5,)]


def test_a_stray_quote_costs_no_quoted_value_of_the_file_that_spans_lines(tmp_path):
    """Helper 36: read line by line around a stray quote, a legitimate two-line title was quarantined as an
    "unterminated quote" and a row of "missing columns", and a quoted value closing on a later line into a
    record of the wrong width (here the stray's quote with the title's) must not join them either."""
    text = HEADER + (
        "u0,i0,view,2024-01-01\n"
        'u1,"i1,view,2024-01-01\n'  # a stray quote: nothing closes it
        'u2,"two\r\nline",view,2024-01-01\n'
        'u3,"three\n\nlines, one blank",view,2024-01-02\n'
        "u4,i4,view,2024-01-01\n"
    )
    (tmp_path / "e.csv").write_bytes(text.encode())
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(1, "u0"), (3, "u2"), (4, "u3"), (5, "u4")]
    assert [(n, reason.split(" (")[0]) for n, reason in rejects] == [
        (2, "malformed line: unterminated quote")
    ]
    con = duckdb.connect()
    stage_file(con, source_file(tmp_path / "e.csv"))
    assert con.execute("select item from stg_raw where _row in (3, 4) order by _row").fetchall() == [
        ("two\r\nline",),
        ("three\n\nlines, one blank",),
    ]


STRAY = 'u9,"i9,view,2024-01-09\n'  # its quote never closes


@pytest.mark.parametrize(
    ("body", "settings"),
    [
        ('u1, "i1", view,2024-01-01\nu2,"a,b" ,view,2024-01-02\n', {}),  # spaces around a quoted value
        (
            'u1,"Dear team,\n' + "x" * 140_000 + '\nthanks",view,2024-01-01\n',
            {},
        ),  # Python's csv: 131,072 at most
        (
            'u1,"note\nmom",i1,view,2024-01-01\nu2,"note\nmom",2024-01-01\nu3,i3,view,2024-01-03\n',
            {},
        ),  # widths
        ("u1,i1,view,2024-01-01\n\nu2,i2,view,2024-01-02\n", {}),  # a blank line is no row
        ('u1,27" TV,"multi\nline",2024-01-01\nu2,"multi\nline",27" TV,2024-01-02\n', {}),  # a quote as text
        ('u1,"a""\n""b",view,2024-01-01\nu2,"two\r\nlines",view,2024-01-02\n', {}),  # doubled quotes, CRLF
        ('u1||"i||1"||view||2024-01-01\nu2||i2||view||2024-01-02\n', {"delimiter": "||", "quote": '"'}),
        ('u1,  "ab",view,2024-01-01\nu2,i2,view,2024-01-02,\n   \nu3,i3,view,2024-01-03\n', {}),  # helper 39
        ('u1,"\nalice,bob",view,2024-01-01\nu2,i2,view,2024-01-02\n', {}),  # a value opening at a line's end
    ],
    ids=[
        "spaces",
        "long-value",
        "widths",
        "blank-line",
        "inch-marks",
        "doubled-and-crlf",
        "two-char-delimiter",
        "two-spaces-a-last-delimiter-a-line-of-spaces",
        "opening-at-the-end",
    ],  # fmt: skip
)
def test_the_rows_around_a_stray_quote_are_read_as_duckdb_reads_them_without_it(tmp_path, body, settings):
    """Helper 37: read line by line, `"i1"` kept its quotes, a 140,000-character value became three rejects,
    a two-line value in a row of five columns made an event of a user `mom"`, `27" TV` with a two-line value
    was two rejects, a blank line moved every later row number, and `||` crashed the whole ingest."""
    header = "user,item,kind,day\n".replace(",", settings.get("delimiter", ","))
    stray = STRAY.replace(",", settings.get("delimiter", ","))
    (tmp_path / "clean.csv").write_bytes((header + body).encode())
    (tmp_path / "stray.csv").write_bytes((header + stray + body).encode())

    def read(name: str, by_lines: bool) -> tuple[list[tuple], list[tuple]]:
        """(_row, user, item, kind, day) of the rows read, and (_row, reason up to its details) of the rejects."""
        feed = Feed(kind="events", path=name, columns={"user_id": "user"}, **settings)
        file = SourceFile(source="s", feed=feed, path=tmp_path / name, format="csv")
        con = duckdb.connect()
        try:
            stage_file(con, file)
            if by_lines:
                _stage_csv_by_lines(con, file, csv_header(file))
            rows = con.execute("select _row, user, item, kind, day from stg_raw order by _row").fetchall()
            rejects = con.execute("select _row, reason from stg_rejects order by _row").fetchall()
            return rows, [(n, reason.split(" (")[0]) for n, reason in rejects]
        finally:
            con.close()

    rows, rejects = read("clean.csv", by_lines=False)
    for by_lines in (False, True):  # as ingest reads it, and by the line reader whatever DuckDB made of it
        rows_around, rejects_around = read("stray.csv", by_lines)
        assert rows_around == [(n + 1, *values) for n, *values in rows]  # the stray is row 1
        assert rejects_around[0] == (
            1,
            "malformed line: unterminated quote" if by_lines else rejects_around[0][1],
        )
        assert rejects_around[1:] == [(n + 1, reason) for n, reason in rejects]


def test_a_byte_order_mark_is_no_part_of_the_first_value_when_read_line_by_line(tmp_path):
    """Helper 37: a file without a header, read line by line, stored its first user as '\\ufeffu0'."""
    (tmp_path / "e.csv").write_text("\ufeffu0,i0,view,2024-01-01\nu1,i1,view,2024-01-01\n" + STRAY)
    feed = Feed(kind="events", path="e.csv", columns={"user_id": "user"}, header=False,
                file_columns=["user", "item", "kind", "day"])  # fmt: skip
    file = SourceFile(source="s", feed=feed, path=tmp_path / "e.csv", format="csv")
    con = duckdb.connect()
    _stage_csv_by_lines(con, file, csv_header(file))
    assert con.execute("select _row, user from stg_raw order by _row").fetchall() == [(1, "u0"), (2, "u1")]


def test_two_stray_quotes_around_rows_of_their_own_cost_their_own_two_rows(tmp_path):
    """The second quote closes the first into a record of five columns, and the lines between are rows."""
    (tmp_path / "e.csv").write_text(
        HEADER
        + STRAY
        + "u1,i1,view,2024-01-01\nu2,i2,view,2024-01-02\n"
        + 'u3,i3",view,2024-01-03,x\n'
        + ROWS[:22]
    )
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(2, "u1"), (3, "u2"), (5, "u0")]
    assert [(n, reason.split(" (")[0]) for n, reason in rejects] == [
        (1, "malformed line: unterminated quote"),
        (4, "malformed line: stray quote"),
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"user,item,kind,day\r\nu1,i1,view,2024-01-01\r\nu2,i2,view,2024-01-01\nu3,i3,view,2024-01-01\r\n",
        b"user,item,kind,day\nu1,i1,view,2024-01-01\nu2,i2,view,2024-01-01\r\nu3,i3,view,2024-01-01\n",
        b"user,item,kind,day\r\nu1,i1,view,2024-01-01\r\nuser,item,kind,day\nu2,i2,view,2024-01-01\n"
        b"u3,i3,view,2024-01-01\n",
    ],
    ids=["one LF line in CRLF", "one CRLF line in LF", "two exports joined"],
)
def test_a_file_whose_lines_end_in_two_ways_is_read_whole(tmp_path, content):
    """DuckDB refused such a file whole ("The CSV Parser state machine reached an invalid state")."""
    (tmp_path / "e.csv").write_bytes(content)
    rows, rejects = staged(tmp_path / "e.csv")
    assert [user for _, user in rows] == ["u1", "u2", "u3"]
    numbers = sorted([n for n, _ in rows] + [n for n, _ in rejects])
    assert numbers == list(range(1, len(numbers) + 1))
    assert [reason for _, reason in rejects] == (
        ["malformed line: the header line again (files joined into one)"] if len(numbers) == 4 else []
    )


def test_malformed_lines_after_empty_lines_are_numbered_in_the_file_order(tmp_path):
    """DuckDB numbers a reject counting the empty lines before it, its rows not: u3 was row 2, the cut line
    before it row 4."""
    (tmp_path / "e.csv").write_text(HEADER + "u1,i1,view,2024-01-01\n\n\nu2,i2\nu3,i3,view,2024-01-01\n")
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(1, "u1"), (3, "u3")]
    assert rejects == [(2, "malformed line: missing columns (expected 4, found 2)")]


def test_a_line_of_the_wrong_width_has_one_reason_whichever_reader_reads_it(tmp_path):
    body = "u1,i1,view,2024-01-01,x\nu2,i2\n"
    (tmp_path / "plain.csv").write_text(HEADER + body)
    (tmp_path / "stray.csv").write_text(HEADER + body + STRAY)
    expected = [
        "malformed line: too many columns (expected 4, found 5)",
        "malformed line: missing columns (expected 4, found 2)",
    ]
    assert [reason for _, reason in staged(tmp_path / "plain.csv")[1]] == expected
    assert [reason for _, reason in staged(tmp_path / "stray.csv")[1]][:2] == expected


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_header_repeated_inside_the_file_is_a_malformed_row(tmp_path, line_end):
    (tmp_path / "e.csv").write_bytes(
        (HEADER + "u1,i1,view,2024-01-01\n").replace("\n", line_end).encode()
        + (HEADER + "u2,i2,view,2024-01-01\n").encode()
    )
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(1, "u1"), (3, "u2")]
    assert rejects == [(2, "malformed line: the header line again (files joined into one)")]


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_second_header_in_another_order_refuses_the_file(tmp_path, line_end):
    """Helper 40: two exports joined, the second with item before user: 100 events were stored with the ids
    swapped, and one `ts` reason was all that showed."""
    (tmp_path / "e.csv").write_bytes(
        (HEADER + "u1,i1,view,2024-01-01\n").replace("\n", line_end).encode()
        + b"item,user,kind,day\ni2,u2,view,2024-01-01\n"
    )
    error = refusal(tmp_path / "e.csv")
    assert str(error) == (
        f"{tmp_path / 'e.csv'}: row 2 is a header with the columns in another order (item,user,kind,day), so "
        "the file joins exports of two layouts and the rows after it would be read into the wrong columns; "
        "the file is refused: split it where the second header starts"
    )
    assert error.rows_read == 3


def test_a_json_line_over_duckdbs_line_size_or_with_a_lone_cr_is_read_with_the_others(tmp_path):
    """Helper 40: a 3 MB line, or a carriage return between two tokens (JSON whitespace), refused the file
    ("CSV Error on Line: 2")."""
    note = "x" * 3_000_000
    (tmp_path / "e.jsonl").write_text(
        '{"user": "u1", "kind": "view"}\n'
        f'{{"user": "u2", "note": "{note}"}}\n'
        '{"user": "u3",\r "kind": "view"}\n',
        newline="",
    )
    rows, rejects = staged(tmp_path / "e.jsonl")
    assert rows == [(1, "u1"), (2, "u2"), (3, "u3")] and rejects == []


def test_a_column_named_rowid_is_a_column_and_rows_keep_their_numbers(tmp_path):
    """Helper 40: a SQLite export's rowid (101..) numbered the rows of a Parquet file (a constant one made 6
    rows read as 16), and a CSV with that column was refused with a binder error."""
    pq.write_table(pa.table({"user": ["u1", "u2", "u3"], "rowid": [101, 102, 103]}), tmp_path / "e.parquet")
    assert staged(tmp_path / "e.parquet") == ([(1, "u1"), (2, "u2"), (3, "u3")], [])
    (tmp_path / "e.csv").write_text(
        "user,item,kind,day,rowid\nu1,i1,view,2024-01-01,7\nu2,i2\nu3,i3,view,2024-01-01,7\n"
    )
    rows, rejects = staged(tmp_path / "e.csv")
    assert rows == [(1, "u1"), (3, "u3")] and [n for n, _ in rejects] == [2]


def test_a_column_named_as_segflows_row_number_is_refused_with_its_name(tmp_path):
    (tmp_path / "e.csv").write_text("user,_row\nu1,1\n")
    assert str(refusal(tmp_path / "e.csv")) == (
        f"{tmp_path / 'e.csv'}: it has a column named _row, segflow's own name for the row number; the file is "
        "refused: rename that column"
    )


def test_columns_that_differ_only_in_case_are_refused_when_the_spec_reads_one(tmp_path):
    """Helper 40: Parquet columns Value (7) and value (1), mapped as value = "value", stored 7; a CSV header
    with both was refused with DuckDB's 'Duplicate named argument ... struct_pack'."""
    pq.write_table(pa.table({"user": ["u1"], "Value": [7.0], "value": [1.0]}), tmp_path / "e.parquet")
    feed = Feed(kind="events", path="e.parquet", columns={"user_id": "user", "value": "value"})
    file = SourceFile(source="s", feed=feed, path=tmp_path / "e.parquet", format="parquet")
    with pytest.raises(FileRefusedError) as raised:
        stage_file(duckdb.connect(), file)
    assert str(raised.value) == (
        f"{tmp_path / 'e.parquet'}: its columns 'Value' and 'value' differ only in case, and names are read "
        "without case, so the spec cannot tell which it maps; the file is refused: rename one"
    )
    assert raised.value.rows_read == 1
    (tmp_path / "e.csv").write_text("user,Value,value\nu1,7,1\n")
    assert "the header line has empty or repeated column names (names are read without case)" in str(
        refusal(tmp_path / "e.csv")
    )


def test_a_parquet_file_of_no_rows_is_empty_without_a_header(tmp_path):
    pq.write_table(pa.table({"user": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(
        EmptyFileError, match=r"^empty file \(a Parquet file of no rows\): nothing to ingest$"
    ):
        staged(tmp_path / "e.parquet")


@pytest.mark.parametrize(
    "second", ["\ufeffitem,user,kind,day\n", "ITEM,USER,KIND,DAY\n"], ids=["bom", "case"]
)
def test_a_second_header_in_another_order_is_found_with_a_bom_or_in_another_case(tmp_path, second):
    """Helper 41: `cat` puts the second export's BOM mid-file, and names are read without case: the rows
    after such a header were stored with user and item swapped."""
    (tmp_path / "e.csv").write_text(
        "\ufeff" + HEADER + "u1,i1,view,2024-01-01\n" + second + "i2,u2,view,2024-01-01\n"
    )
    assert "row 2 is a header with the columns in another order" in str(refusal(tmp_path / "e.csv"))


def test_a_lone_cr_between_two_json_objects_ends_a_line_and_one_between_tokens_does_not(tmp_path):
    """Helper 41: a lone CR in a CRLF file joined two events into one malformed row."""
    (tmp_path / "e.jsonl").write_bytes(
        b'{"user": "u1"}\r\n{"user": "u2"}\r{"user": "u3"}\r\n{"user": "u4",\r "kind": "view"}\n'
    )
    assert staged(tmp_path / "e.jsonl") == ([(1, "u1"), (2, "u2"), (3, "u3"), (4, "u4")], [])


def test_a_parquet_column_named_file_row_number_is_read(tmp_path):
    """Helper 41: DuckDB's own file_row_number option clashed with it (Binder Error, 0 rows read)."""
    table = pa.table({"user": ["u1", "u2"], "file_row_number": [7, 7]})
    pq.write_table(table, tmp_path / "e.parquet")
    assert staged(tmp_path / "e.parquet") == ([(1, "u1"), (2, "u2")], [])


def test_keys_that_differ_in_case_beside_a_line_that_is_not_json_cost_only_their_lines(tmp_path):
    """The case check read every line as JSON: one cut short refused the whole file (found in review)."""
    (tmp_path / "e.jsonl").write_text(
        '{"user":"u1","Value":1}\n{"user":"u2","value":2}\n{"user": "u3", "val\n'
        '{"user":"u4","value":1,"Value":2}\n'
    )
    rows, rejects = staged(tmp_path / "e.jsonl")
    assert rows == [(1, "u1"), (2, "u2")]
    assert [(n, reason.split(" (")[0]) for n, reason in rejects] == [
        (3, "malformed line: not a JSON object"),
        (4, "malformed line: keys 'Value' and 'value' differ only in case and hold different values"),
    ]
