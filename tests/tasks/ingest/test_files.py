"""Ingest through the `ingest-events` flow on small files this test writes: quarantine reasons, accounting,
rejection, idempotency, formats, and the MovieLens layouts."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest_events
from tasks.ingest.files import (
    FileOutcome,
    FileStatus,
    IngestFailedError,
    check_file_columns,
    discover_files,
    file_sha256,
    ingested_contents,
    record_manifest,
)
from tasks.ingest.sources import SourceSpecError, parse_source_spec
from tasks.warehouse import create_warehouse_tables
from tests.helpers import query

pytestmark = pytest.mark.usefixtures("prefect_harness")

HEADER = "event_id,user_id,item_id,event_type,ts,value\n"
GOOD_ROWS = [f"e{i},u{i % 7},i{i % 11},view,2024-03-01 10:{i % 60:02d}:00,\n" for i in range(100)]
SPEC = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "user_id"
item_id = "item_id"
event_type = "event_type"
ts = "ts"
value = "value"
"""


def write_source(
    folder: Path, rows: list[str], spec: str = SPEC, header: str = HEADER, name: str = "events.csv"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(header + "".join(rows))
    (folder / "source.toml").write_text(spec)
    return folder / "source.toml"


def ingest(spec_path: Path, workspace: Path, max_bad_fraction: float = 0.05):
    return ingest_events(source=str(spec_path), workspace=str(workspace), max_bad_fraction=max_bad_fraction)


def quarantined(workspace: Path) -> list[tuple]:
    return query(workspace, "select row_number, reason, record from quarantine order by row_number")


def test_clean_file_is_inserted_whole_and_a_second_ingest_changes_nothing(tmp_path, workspace):
    spec = write_source(tmp_path / "src", GOOD_ROWS)
    report = ingest(spec, workspace)
    assert [(f.status, f.rows_read, f.rows_inserted) for f in report.files] == [("ingested", 100, 100)]
    tables = ("events", "items", "quarantine", "ingest_manifest", "sources")
    before = {t: query(workspace, f"select * from {t} order by all") for t in tables}
    again = ingest(spec, workspace)
    assert [f.status for f in again.files] == ["skipped"]
    assert {t: query(workspace, f"select * from {t} order by all") for t in tables} == before
    assert query(
        workspace, "select source, count(*), count(distinct user_id) from events group by source"
    ) == [("shop", 100, 7)]


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (",u1,i1,view,2024-03-01 10:00:00,\n", None),  # event_id is not mapped: not a problem
        ("x,,i1,view,2024-03-01 10:00:00,\n", "user_id: missing (null or empty)"),
        ("x,u1,  ,view,2024-03-01 10:00:00,\n", "item_id: missing (null or empty)"),
        ("x,u1,i1,,2024-03-01 10:00:00,\n", "event_type: missing (null or empty)"),
        ("x,u1,i1,view,,\n", "ts: missing (null or empty)"),
        ("x,u1,i1,view,yesterday,\n", "ts: does not parse as a timestamp ('yesterday')"),
        ("x,u1,i1,view,2099-01-01 00:00:00,\n", "ts: more than a day in the future ('2099-01-01 00:00:00')"),
        ("x,u1,i1,view,1989-12-31 23:59:59,\n", "ts: before 1990 ('1989-12-31 23:59:59')"),
        ("x,u1,i1,teleport,2024-03-01 10:00:00,\n", "event_type: not in the configured set ('teleport')"),
        ("x,u1,i1,purchase,2024-03-01 10:00:00,cheap\n", "value: not numeric ('cheap')"),
        ("x,u1,i1,view,2024-03-01 10:00:00,,extra\n", "malformed line: too many columns"),
        ("x,u1,i1,view\n", "malformed line: missing columns"),
        ('x,"u1"u,i1,view,2024-03-01 10:00:00,\n', "malformed line: unquoted value"),
    ],
)
def test_each_kind_of_bad_row_is_quarantined_with_its_reason_and_raw_record(
    tmp_path, workspace, bad_row, reason
):
    rows = GOOD_ROWS[:50] + [bad_row] + GOOD_ROWS[50:]
    report = ingest(write_source(tmp_path / "src", rows), workspace)
    (outcome,) = report.files
    assert outcome.rows_read == 101
    if reason is None:
        assert outcome.rows_inserted == 101 and quarantined(workspace) == []
        return
    assert (outcome.rows_inserted, outcome.rows_quarantined) == (100, 1)
    ((row_number, got_reason, record),) = quarantined(workspace)
    assert row_number == 51
    assert got_reason.startswith(reason)
    assert record.startswith(('{"event_id":"x"', "x,"))


def test_event_type_is_lowercased_and_trimmed_before_the_check(tmp_path, workspace):
    rows = ["a,u1,i1, VIEW ,2024-03-01 10:00:00,\n", "b,u1,i1,Purchase,2024-03-01 10:00:00,9.5\n"]
    ingest(write_source(tmp_path / "src", rows), workspace)
    assert query(workspace, "select event_type, value from events order by event_type") == [
        ("purchase", 9.5),
        ("view", None),
    ]


def test_quarantined_rows_of_many_kinds_keep_their_file_row_numbers(tmp_path, workspace):
    rows = list(GOOD_ROWS)
    rows[9] = "x,u1,i1,view,2024-03-01 10:00:00,,extra\n"  # data row 10: malformed
    rows[10] = "x,u1,i1,view\n"  # 11: malformed
    rows[29] = "x,u1,i1,teleport,2024-03-01 10:00:00,\n"  # 30: bad event type
    ingest(write_source(tmp_path / "src", rows), workspace)
    assert [(n, r.split(":")[0]) for n, r, _ in quarantined(workspace)] == [
        (10, "malformed line"), (11, "malformed line"), (30, "event_type"),
    ]  # fmt: skip


def test_every_row_is_accounted_for(tmp_path, workspace):
    rows = GOOD_ROWS + [GOOD_ROWS[0], GOOD_ROWS[1], "x,,i1,view,2024-03-01 10:00:00,\n", "x,u1\n"]
    report = ingest(write_source(tmp_path / "src", rows), workspace)
    (outcome,) = report.files
    assert (outcome.rows_read, outcome.rows_inserted, outcome.rows_duplicate, outcome.rows_quarantined) == (
        104,
        100,
        2,
        2,
    )
    manifest = query(
        workspace,
        "select rows_read, rows_inserted, rows_duplicate, rows_quarantined, status from ingest_manifest",
    )
    assert manifest == [(104, 100, 2, 2, "ingested")]
    assert query(workspace, "select count(*) from events") == [(100,)]
    assert query(workspace, "select count(*) from quarantine") == [(2,)]


SEGMENT_SPEC = """
name = "segment"
[events]
path = "events.jsonl"
where = "type = 'track' and event in ('Product Viewed', 'Order Completed')"
[events.columns]
user_id = "userId"
item_id = "properties->>'product_id'"
event_type = "CASE event WHEN 'Order Completed' THEN 'purchase' ELSE 'view' END"
ts = "timestamp"
value = "properties->>'price'"
"""


def segment_dump(n_track: int) -> list[str]:
    """A Segment-style dump: track calls among page and identify calls (whose price is text) and a track call
    of an event type the spec does not map."""
    rows = [
        {"type": "track", "event": "Product Viewed", "userId": f"u{i % 4}", "timestamp": f"2026-03-01T10:{i:02d}:00Z",
         "properties": {"product_id": f"P{i % 5}", "price": "9.50"}}
        for i in range(n_track)
    ]  # fmt: skip
    rows += [
        {"type": "page", "userId": f"u{i}", "timestamp": f"2026-03-01T11:{i:02d}:00Z",
         "properties": {"path": "/home", "price": "n/a"}}
        for i in range(5)
    ]  # fmt: skip
    rows.append({"type": "identify", "userId": "u1", "timestamp": "2026-03-01T12:00:00Z", "traits": {"e": 1}})
    rows.append({"type": "track", "event": "Signed Up", "userId": "u2", "timestamp": "2026-03-01T12:01:00Z"})
    return [json.dumps(row) + "\n" for row in rows]


def test_a_feeds_where_filters_rows_and_the_manifest_counts_them(tmp_path, workspace):
    no_user = json.dumps({"type": "track", "event": "Order Completed", "userId": None,
                          "timestamp": "2026-03-01T12:02:00Z", "properties": {"product_id": "P1"}})  # fmt: skip
    rows = segment_dump(40) + [no_user + "\n"]
    spec = write_source(tmp_path / "src", rows, SEGMENT_SPEC, header="", name="events.jsonl")
    (outcome,) = ingest(spec, workspace).files
    # The page, identify and Signed Up calls are filtered: not events, not bad rows (the pages' price 'n/a'
    # is never read); the Order Completed call without a user is kept by the filter, so quarantined.
    assert (outcome.rows_read, outcome.rows_inserted, outcome.rows_quarantined, outcome.rows_filtered) == (
        48, 40, 1, 7
    )  # fmt: skip
    assert query(
        workspace,
        "select rows_read, rows_inserted + rows_duplicate + rows_quarantined + rows_filtered, rows_filtered "
        "from ingest_manifest",
    ) == [(48, 48, 7)]
    assert query(workspace, "select count(*), count(distinct user_id), sum(value) from events") == [
        (40, 4, 380.0)
    ]
    assert [reason for _, reason, _ in quarantined(workspace)] == ["user_id: missing (null or empty)"]


def test_the_bad_share_of_a_filtered_file_is_of_the_rows_its_where_keeps(tmp_path, workspace):
    bad = json.dumps({"type": "track", "event": "Product Viewed", "userId": "u1", "timestamp": "yesterday",
                      "properties": {"product_id": "P1"}})  # fmt: skip
    spec = write_source(
        tmp_path / "src", segment_dump(12) + [bad + "\n"], SEGMENT_SPEC, header="", name="events.jsonl"
    )
    with pytest.raises(IngestFailedError) as raised:
        ingest(spec, workspace)
    assert "events.jsonl: 1 of 13 rows its where does not filter (of 20 read) are bad (7.7% > max-bad-fraction 5.0%)" in str(
        raised.value
    )  # fmt: skip
    assert "(it would have been 12 inserted, 0 duplicate, 1 quarantined, 7 filtered)" in str(raised.value)
    assert query(workspace, "select status, rows_read, rows_filtered from ingest_manifest") == [
        ("rejected", 20, 0)
    ]


def test_a_row_whose_where_column_has_a_value_of_the_wrong_type_is_quarantined_not_filtered(
    tmp_path, workspace
):
    spec = SPEC.replace('[events]\npath = "events.csv"', '[events]\npath = "events.csv"\nwhere = "value > 0"')
    rows = [row.replace(",\n", ",5\n") for row in GOOD_ROWS[:60]] + [
        row.replace(",\n", ",-1\n") for row in GOOD_ROWS[60:99]
    ]
    rows.append(GOOD_ROWS[99].replace(",\n", ",lots\n"))
    (outcome,) = ingest(write_source(tmp_path / "src", rows, spec), workspace, max_bad_fraction=0.05).files
    assert (outcome.rows_inserted, outcome.rows_quarantined, outcome.rows_filtered) == (60, 1, 39)
    assert [reason for _, reason, _ in quarantined(workspace)] == ["column value: not a BIGINT ('lots')"]


FILTER_SPEC = """
name = "shop"
[events]
path = "events.csv"
where = "{where}"
[events.columns]
user_id = "user"
item_id = "sku"
event_type = "'purchase'"
ts = "ts"
value = "price * qty"
"""


def filtered_shop(tmp_path: Path, where: str, rows: list[str]):
    """Ingests rows of `type,user,sku,price,qty,ts` under a spec whose feed has `where`."""
    header = "type,user,sku,price,qty,ts\n"
    spec = write_source(tmp_path / "shop", rows, FILTER_SPEC.format(where=where.replace('"', '\\"')), header)
    return ingest(spec, tmp_path / "workspace")


def track_rows(n: int) -> list[str]:
    return [
        f"track,{100 + i % 9},s{i % 5},{i}.5,{1 + i % 3},2026-03-{1 + i % 28:02d} 10:{i:02d}:00\n"
        for i in range(n)
    ]


def test_rows_the_where_filters_do_not_decide_the_types_of_the_rows_it_keeps(tmp_path):
    """Helper 31 (F3, F4): page calls whose price is n/a, 40 of 50 rows, made `price * qty` an error (the
    column was no number in 90% of the file); where the where was null on them (no type), they were
    quarantined for a column the where never reads, and the file rejected."""
    pages = [f"page,{i},,n/a,n/a,2026-03-01 11:{i:02d}:00\n" for i in range(40)]
    (outcome,) = filtered_shop(tmp_path, "type = 'track'", track_rows(10) + pages).files
    assert (outcome.rows_inserted, outcome.rows_quarantined, outcome.rows_filtered) == (10, 0, 40)
    nulls = [f",{i},,n/a,n/a,2026-03-01 11:{i:02d}:00\n" for i in range(3)]  # no type: the where is null
    (outcome,) = filtered_shop(tmp_path / "b", "type = 'track'", track_rows(37) + nulls).files
    assert (outcome.status, outcome.rows_inserted, outcome.rows_quarantined, outcome.rows_filtered) == (
        "ingested", 37, 0, 3
    )  # fmt: skip


@pytest.mark.parametrize(
    ("where", "counts"),
    [
        (
            "user is not null",
            (39, 1, 1),
        ),  # a test for a value reads text: guest-7 kept, the blank id filtered
        ("coalesce(price, 0) > 0", (39, 1, 1)),  # lots is quarantined, not filtered by the coalesce
    ],
)
def test_a_where_never_filters_a_value_of_the_wrong_type_unseen(tmp_path, where, counts):
    """Helper 31 (F1): a where that is true or false on a null (`is not null`, `coalesce`) filtered the
    rows whose value did not fit the column's type, without a trace."""
    rows = track_rows(38)
    rows.append("track,guest-7,s1,2.5,1,2026-03-02 10:00:00\n")  # an id no number: user is typed BIGINT
    rows.append("track,,s1,0,1,2026-03-02 10:01:00\n")
    rows.append("track,105,s1,lots,1,2026-03-02 10:02:00\n")
    (outcome,) = filtered_shop(tmp_path, where, rows).files
    assert (outcome.rows_inserted, outcome.rows_quarantined, outcome.rows_filtered) == counts


def test_a_where_that_compares_a_time_of_another_kind_is_refused_not_filtering_everything(tmp_path):
    """Helper 31 (F5): `ts >= '2026-03-01'` on epoch seconds compared text and filtered every row."""
    rows = [f"track,u{i},s1,1,1,{1772359200 + i * 60}\n" for i in range(20)]
    with pytest.raises(IngestFailedError) as raised:
        filtered_shop(tmp_path, "ts >= '2026-03-01'", rows)
    assert "the expression for where = \"ts >= '2026-03-01'\" (source.toml line 5) fails on a row" in str(
        raised.value
    )
    assert "compares values of one kind (epoch seconds with a number, not with '2024-03-01')" in str(
        raised.value
    )
    (outcome,) = filtered_shop(tmp_path / "b", "ts >= 1772359740", rows).files
    assert (outcome.rows_inserted, outcome.rows_filtered) == (11, 9)


def test_a_where_that_compares_a_text_column_with_a_number_says_to_write_the_number_as_text(tmp_path):
    """Helper 42 (F11): `order_status = 1` on statuses was refused with advice about epoch seconds."""
    with pytest.raises(IngestFailedError) as raised:
        filtered_shop(tmp_path, "type = 1", track_rows(20))
    assert (
        "A condition compares text ('track') with a number: write the number as text (status = '1'), or "
        "compare a column whose values are numbers"
    ) in str(raised.value)


def test_a_where_that_keeps_no_row_of_a_file_says_so(tmp_path):
    (outcome,) = filtered_shop(tmp_path, "type = 'Track'", track_rows(12)).files
    assert (outcome.status, outcome.rows_inserted, outcome.rows_filtered) == ("ingested", 0, 12)
    assert outcome.warnings == (
        "where = \"type = 'Track'\" (source.toml line 5) keeps none of its 12 rows: nothing of this file is "
        "inserted, and it is recorded as ingested (a changed where does not read it again)",
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("type", "where = 'type' gives VARCHAR, not true or false: a row filter is a condition"),
        (
            "kind = 'track'",
            "where = \"kind = 'track'\" (source.toml line 5) reads kind, which this file does not have",
        ),
        (
            "type in (select 1)",
            "where = 'type in (select 1)' is refused: a subquery (select ...) is not allowed",
        ),
    ],
)
def test_a_where_that_cannot_filter_is_an_error_naming_its_line(tmp_path, workspace, where, message):
    spec = SEGMENT_SPEC.replace("where = \"type = 'track' and event in ('Product Viewed', 'Order Completed')\"",
                                f"where = {json.dumps(where)}")  # fmt: skip
    path = write_source(tmp_path / "src", segment_dump(3), spec, header="", name="events.jsonl")
    with pytest.raises((SourceSpecError, IngestFailedError)) as raised:
        check_file_columns(parse_source_spec(path))
        ingest(path, workspace)
    assert "source.toml line 5" in str(raised.value) and message in str(raised.value)


# The corpus case's spec (tests/corpus/ga4_items_unnested): a where, unnest = { item = "items" }, the items'
# fields read with ->>.
GA4_SPEC = (Path(__file__).parents[2] / "corpus" / "ga4_items_unnested" / "source.toml").read_text()


def ga4_export() -> list[str]:
    """A GA4-style export as JSON Lines: an event's items are a JSON array; a page view has none, an order
    three (one priced n/a), one order an empty list and one a text, a cart three (one without an id, one a
    string, which `->>` reads as no id, where it refused the file: helper 33)."""
    at = 1709280000000000  # 2024-03-01 08:00 UTC in microseconds, as GA4 writes event_timestamp
    rows = [
        {"event_name": "page_view", "user_pseudo_id": "u1", "event_timestamp": at, "_list": 1},  # a name unnest uses
        {"event_name": "view_item", "user_pseudo_id": "u1", "event_timestamp": at + 60_000_000,
         "items": [{"item_id": "SKU-1", "price": 9.5, "quantity": 1}]},
        {"event_name": "purchase", "user_pseudo_id": "u1", "event_timestamp": at + 120_000_000,
         "items": [{"item_id": "SKU-1", "price": 9.5, "quantity": 2}, {"item_id": "SKU-2", "price": "n/a"},
                   {"item_id": "SKU-3", "price": 3, "quantity": 1}]},
        {"event_name": "purchase", "user_pseudo_id": "u2", "event_timestamp": at + 180_000_000, "items": []},
        {"event_name": "purchase", "user_pseudo_id": "u2", "event_timestamp": at + 240_000_000, "items": "oops"},
        {"event_name": "add_to_cart", "user_pseudo_id": "u3", "event_timestamp": at + 300_000_000,
         "items": [{"item_id": "SKU-9"}, {"price": 1}, "SKU-10"]},
    ]  # fmt: skip
    return [json.dumps(row) + "\n" for row in rows] + ["not json\n"]


def test_a_feeds_unnest_makes_an_event_of_each_element_and_the_manifest_counts_the_rows_it_adds(
    tmp_path, workspace
):
    spec = write_source(tmp_path / "src", ga4_export(), GA4_SPEC, header="", name="events.jsonl")
    (outcome,) = ingest(spec, workspace, max_bad_fraction=1.0).files
    # 7 lines read; the order's 3 items and the cart's 3 add 4 rows: 11 = 4 + 6 + 1 (the page view).
    assert (outcome.rows_read, outcome.rows_unnested, outcome.rows_inserted, outcome.rows_quarantined,
            outcome.rows_filtered) == (7, 4, 4, 6, 1)  # fmt: skip
    assert query(
        workspace,
        "select rows_read + rows_unnested, rows_inserted + rows_duplicate + rows_quarantined + rows_filtered, "
        "rows_unnested from ingest_manifest",
    ) == [(11, 11, 4)]
    assert query(workspace, "select user_id, item_id, event_type, ts, value, quantity from events order by ts, item_id") == [
        ("u1", "SKU-1", "view", datetime(2024, 3, 1, 8, 1), 9.5, 1.0),
        ("u1", "SKU-1", "purchase", datetime(2024, 3, 1, 8, 2), 9.5, 2.0),
        ("u1", "SKU-3", "purchase", datetime(2024, 3, 1, 8, 2), 3.0, 1.0),
        ("u3", "SKU-9", "add_to_cart", datetime(2024, 3, 1, 8, 5), None, None),
    ]  # fmt: skip
    # A bad element is quarantined under its record's line, the record and the element kept.
    rows = quarantined(workspace)
    assert [(row, reason) for row, reason, _ in rows] == [
        (3, "value: not numeric ('n/a')"),
        (4, "item: an empty list, no event"),
        (5, "item: not a list ('oops')"),
        (6, "item_id: missing (null or empty)"),
        (6, "item_id: missing (null or empty)"),
        (7, "malformed line: not a JSON object"),
    ]
    record = json.loads(rows[0][2])
    assert (
        list(record)[:2] == ["_element", "item"] and record["_element"] == 2
    )  # first: a record is cut at 1,000
    assert record["item"] == {"item_id": "SKU-2", "price": "n/a"} and record["user_pseudo_id"] == "u1"
    assert len(json.loads(record["items"])) == 3


def test_a_parquet_list_of_structs_unnests_to_typed_elements(tmp_path, workspace):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "src"
    folder.mkdir()
    item = pa.struct([("sku", pa.string()), ("price", pa.float64()), ("qty", pa.int64())])
    lines = [[("A", 2.5, 2), ("B", 10.0, 1)], [], None, [("C", 0.0, 1)]]
    pq.write_table(
        pa.table({
            "order_id": ["o1", "o2", "o3", "o4"], "customer": ["c1", "c2", "c3", "c4"],
            "at": [datetime(2024, 5, 1, 9 + i) for i in range(4)], "lines": pa.array(lines, pa.list_(item)),
        }),
        folder / "orders.parquet",
    )  # fmt: skip
    (folder / "source.toml").write_text(
        'name = "shop"\n[events]\npath = "orders.parquet"\nunnest = { line = "lines" }\n'
        'where = "line.price > 0"\n[events.columns]\nuser_id = "customer"\nitem_id = "line.sku"\n'
        'event_type = "\'purchase\'"\nts = "at"\nvalue = "line.price * line.qty"\nquantity = "line.qty"\n'
        'event_id = "order_id"\n'
    )
    (outcome,) = ingest(folder / "source.toml", workspace, max_bad_fraction=1.0).files
    # The free line C is filtered; the orders without lines are quarantined, not filtered: the where reads
    # the element they lack (helper 33: filtered unseen where the where read a field of a struct).
    counts = (outcome.rows_read, outcome.rows_unnested, outcome.rows_inserted, outcome.rows_quarantined)
    assert counts + (outcome.rows_filtered,) == (4, 1, 2, 2, 1)
    assert query(workspace, "select event_id, item_id, value, quantity from events order by event_id") == [
        ("o1#A", "A", 5.0, 2.0), ("o1#B", "B", 10.0, 1.0)
    ]  # fmt: skip
    assert [(row, reason) for row, reason, _ in quarantined(workspace)] == [
        (2, "line: an empty list, no event"), (3, "line: missing, no list to unnest")
    ]  # fmt: skip


SEGMENT_ORDERS_SPEC = """
name = "segment"
[events]
path = "orders.jsonl"
unnest = { product = "properties->'products'" }
[events.columns]
user_id = "userId"
item_id = "product->'product_id'"
event_type = "'purchase'"
ts = "timestamp"
event_id = "messageId"
"""


def order(message: str, products: list[str], line_ids: bool = False) -> str:
    """A Segment Order Completed call (JSON Lines) whose products are under properties."""
    listed = [{"product_id": p} | ({"line_id": f"{message}-{p}"} if line_ids else {}) for p in products]
    return json.dumps({"messageId": message, "userId": "u1", "timestamp": "2026-03-01T10:00:00Z",
                       "properties": {"products": listed}}) + "\n"  # fmt: skip


def test_an_unnested_records_id_is_one_per_item_and_a_record_delivered_again_repeats_none(
    tmp_path, workspace
):
    """The messageId names the call: each product's event gets it with its item (m1#P1), not with its place in
    the list (helper 33: a resent order whose products came in another order, one more, lost the new product
    as a "duplicate" and stored an old one twice)."""
    first = ingest(write_source(tmp_path / "a", [order("m1", ["P1", "P2"]), order("m2", ["P1", "P1"])],
                                SEGMENT_ORDERS_SPEC, header="", name="orders.jsonl"), workspace)  # fmt: skip
    # m2 lists P1 twice (a shirt in two sizes): two events, not one and a duplicate (helper 33, F9).
    assert (first.files[0].rows_read, first.files[0].rows_unnested, first.files[0].rows_inserted) == (2, 2, 4)
    again = ingest(write_source(tmp_path / "b", [order("m1", ["P4", "P2", "P1"]), order("m3", ["P3"])],
                                SEGMENT_ORDERS_SPEC, header="", name="orders.jsonl"), workspace)  # fmt: skip
    assert (again.files[0].rows_inserted, again.files[0].rows_duplicate) == (2, 2)
    # item_id = "product->'product_id'" gives JSON: read as its text, "P1" as P1.
    assert query(workspace, "select event_id, item_id from events order by event_id") == [
        ("m1#P1", "P1"), ("m1#P2", "P2"), ("m1#P4", "P4"), ("m2#P1", "P1"), ("m2#P1#2", "P1"), ("m3#P3", "P3")
    ]  # fmt: skip


def test_an_event_id_the_element_holds_is_taken_as_it_is(tmp_path, workspace):
    spec = SEGMENT_ORDERS_SPEC.replace('event_id = "messageId"', "event_id = \"product->>'line_id'\"")
    rows = [order("m1", ["P1", "P2"], line_ids=True)]
    ingest(write_source(tmp_path / "a", rows, spec, header="", name="orders.jsonl"), workspace)
    again = ingest(write_source(tmp_path / "b", [order("m1", ["P2", "P1"], line_ids=True)], spec, header="",
                                name="orders.jsonl"), workspace)  # fmt: skip
    assert (again.files[0].rows_inserted, again.files[0].rows_duplicate) == (0, 2)
    assert query(workspace, "select event_id from events order by 1") == [("m1-P1",), ("m1-P2",)]


@pytest.mark.parametrize(
    ("unnest", "error", "message"),
    [
        ('unnest = "items"', SourceSpecError,
         "source.toml line 5: unnest must name one element and its list, e.g. unnest = { item = \"items\" }"),
        ('unnest = { user_pseudo_id = "items" }', SourceSpecError,
         "source.toml line 5: unnest's element 'user_pseudo_id' is a column of events.jsonl: name the element otherwise"),
        ('unnest = { _segflow_record = "items" }', SourceSpecError,
         "source.toml line 5: unnest's element name '_segflow_record' is segflow's own (_row, _segflow_...)"),
        ('unnest = { item = "len(items)" }', SourceSpecError,
         "source.toml line 5: unnest's list item = 'len(items)' gives BIGINT in events.jsonl, not a list or a JSON array"),
        ('unnest = { item = "unnest(items)" }', SourceSpecError,
         "the expression for unnest = 'unnest(items)' is refused: unnest(...) makes several rows of one"),
        ('unnest = { item = "products" }', IngestFailedError,
         "the expression for unnest = 'products' (source.toml line 5) reads products, which this file does not have"),
    ],
)  # fmt: skip
def test_an_unnest_that_cannot_make_rows_is_an_error_naming_its_line(
    tmp_path, workspace, unnest, error, message
):
    spec = GA4_SPEC.replace('unnest = { item = "items" }', unnest)
    path = write_source(tmp_path / "src", ga4_export(), spec, header="", name="events.jsonl")
    with pytest.raises(error) as raised:
        ingest(path, workspace, max_bad_fraction=1.0)
    assert message in str(raised.value)


def test_a_warehouse_made_before_row_filters_takes_them(tmp_path, workspace):
    workspace.mkdir(parents=True, exist_ok=True)
    old = Path(__file__).parents[3] / "sql" / "warehouse" / "ingest_manifest.sql"
    with duckdb.connect(str(workspace / "warehouse.duckdb")) as con:
        con.execute(old.read_text().split("    rows_filtered")[0] + ")")  # the table as it was made before
        con.execute(
            "insert into ingest_manifest values ('b0', 's', 'f', 'events', 'x', 1, 1, 0, 0, 'ingested', null, now())"
        )
    spec = write_source(tmp_path / "src", segment_dump(3), SEGMENT_SPEC, header="", name="events.jsonl")
    ingest(spec, workspace)
    assert query(workspace, "select batch_id, rows_read, rows_filtered, rows_unnested from ingest_manifest order by ingested_at") == [
        ("b0", 1, 0, 0), (query(workspace, "select max(batch_id) from events")[0][0], 10, 7, 0)
    ]  # fmt: skip


def test_an_event_equal_to_one_already_ingested_from_another_file_is_a_duplicate(tmp_path, workspace):
    ingest(write_source(tmp_path / "a", GOOD_ROWS[:60]), workspace)
    report = ingest(
        write_source(tmp_path / "b", GOOD_ROWS[40:] + ["new,u99,i1,view,2024-03-02 10:00:00,\n"]), workspace
    )
    (outcome,) = report.files
    assert (outcome.rows_read, outcome.rows_inserted, outcome.rows_duplicate) == (61, 41, 20)
    assert query(workspace, "select count(*) from events") == [(101,)]


def test_a_mapped_event_id_seen_before_makes_a_duplicate(tmp_path, workspace):
    spec = SPEC.replace('value = "value"', 'value = "value"\nevent_id = "event_id"')
    rows = ["e1,u1,i1,view,2024-03-01 10:00:00,\n", "e1,u2,i2,view,2024-03-01 11:00:00,\n"]
    report = ingest(write_source(tmp_path / "src", rows, spec), workspace)
    assert (report.files[0].rows_inserted, report.files[0].rows_duplicate) == (1, 1)
    assert query(workspace, "select event_id, user_id from events") == [("e1", "u1")]


def test_a_file_with_too_many_bad_rows_is_rejected_then_accepted_with_a_higher_threshold(tmp_path, workspace):
    rows = (
        GOOD_ROWS[:90]
        + ["x,u1,i1,teleport,2024-03-01 10:00:00,\n"] * 4
        + ["x,u1,i1,warp,2024-03-01 10:00:00,\n"] * 2
        + ["x,,i1,view,2024-03-01 10:00:00,\n"] * 4
    )
    spec = write_source(tmp_path / "src", rows)
    with pytest.raises(IngestFailedError) as raised:
        ingest(spec, workspace)
    message = str(raised.value)
    assert "events.csv: 10 of 100 rows are bad (10.0% > max-bad-fraction 5.0%)" in message
    # Each kind of reason with its most frequent value: what to map or fix.
    assert "event_type: not in the configured set, e.g. 'teleport' (6); user_id: missing (4)" in message
    assert (
        "nothing of it was written (it would have been 90 inserted, 0 duplicate, 10 quarantined)" in message
    )
    assert query(workspace, "select count(*) from events") == [(0,)]
    assert query(workspace, "select count(*) from quarantine") == [(0,)]
    # The manifest names no row that is not in `events` or `quarantine`: only the rows read.
    assert query(
        workspace,
        "select status, rows_read, rows_inserted, rows_duplicate, rows_quarantined from ingest_manifest",
    ) == [("rejected", 100, 0, 0, 0)]

    report = ingest(spec, workspace, max_bad_fraction=0.2)
    assert [(f.status, f.rows_inserted, f.rows_quarantined) for f in report.files] == [("ingested", 90, 10)]
    assert query(workspace, "select count(*) from events") == [(90,)]


def test_spec_expressions_map_any_layout(tmp_path, workspace):
    spec = """
name = "online_shop"
[events]
path = "exports/*.csv.gz"
[events.columns]
user_id = "CAST(customer AS VARCHAR)"
item_id = "sku"
event_type = "CASE WHEN qty < 0 THEN 'return' ELSE 'purchase' END"
ts = "order_time"
value = "qty * unit_price"
quantity = "qty"
[items]
path = "catalogue.jsonl"
[items.columns]
item_id = "sku"
title = "name"
category = "department"
price = "list_price"
"""
    folder = tmp_path / "shop"
    (folder / "exports").mkdir(parents=True)
    lines = ["customer,sku,qty,unit_price,order_time"] + [
        f"{c},A-{c % 3},{1 if c % 4 else -1},2.5,2024-05-0{1 + c % 9}T08:00:00Z" for c in range(20)
    ]
    lines.append("7,A-1,many,2.5,2024-05-01T08:00:00Z")
    with gzip.open(folder / "exports" / "part-1.csv.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    catalogue = [
        {"sku": f"A-{k}", "name": f"thing {k}", "department": "tools", "list_price": 2.5} for k in range(3)
    ]
    (folder / "catalogue.jsonl").write_text("\n".join(json.dumps(r) for r in catalogue) + "\n{broken\n")
    (folder / "source.toml").write_text(spec)
    report = ingest(folder / "source.toml", workspace, max_bad_fraction=0.3)
    assert [(f.kind, f.rows_read, f.rows_inserted, f.rows_quarantined) for f in report.files] == [
        ("items", 4, 3, 1), ("events", 21, 20, 1),
    ]  # fmt: skip
    assert query(workspace, "select event_type, count(*), sum(value) from events group by 1 order by 1") == [
        ("purchase", 15, 37.5), ("return", 5, -12.5),
    ]  # fmt: skip
    assert query(workspace, "select reason from quarantine order by reason") == [
        ("column qty: not a BIGINT ('many')",), ("malformed line: not a JSON object",),
    ]  # fmt: skip
    assert query(workspace, "select item_id, title, category, price from items order by 1")[0] == (
        "A-0",
        "thing 0",
        "tools",
        2.5,
    )
    assert query(workspace, "select min(ts) from events") == [(datetime(2024, 5, 1, 8, 0),)]


def test_text_stays_text_where_the_expression_reads_it_as_text(tmp_path, workspace):
    """Columns were typed whenever an expression read them: `'ean:' || ean` lost the leading zero, a GA4
    pseudo id became a rounded double, and a Shopify price `1,299.00` met a DOUBLE where the expression
    itself takes the comma out. Only a column an expression cannot read as text (`qty` in `... * qty`) is
    typed. Times keep an offset written after a space, as Shopify writes them (05:04 -0500 was stored as
    05:04)."""
    spec = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "'ga4:' || coalesce(customer, pseudo)"
item_id = "'ean:' || ean"
event_type = "'purchase'"
ts = "created"
value = "replace(price, ',', '')::double * qty"
quantity = "abs(qty)"
"""
    rows = [
        "customer,pseudo,ean,price,qty,created",
        ',455803273.1708765818,0812359021009,"1,299.00",-2,2026-03-01 05:04:04 -0500',
        "0042,,0000000000017,12.50,1,2026-03-01 05:04:04 +01:00",
    ] + [
        f"{c},,50123456789{c:02d},3,3,2026-03-01T05:04:{c:02d} Z" for c in range(10)
    ]  # 11 of 12 prices parse
    header, *lines = (f"{row}\n" for row in rows)
    report = ingest(write_source(tmp_path / "shop", lines, spec, header), workspace)
    assert [(f.rows_read, f.rows_inserted, f.rows_quarantined) for f in report.files] == [(12, 12, 0)]
    assert query(
        workspace,
        "select user_id, item_id, value, quantity, ts from events where user_id like 'ga4:0%' order by 1",
    ) == [
        ("ga4:0", "ean:5012345678900", 9.0, 3.0, datetime(2026, 3, 1, 5, 4, 0)),
        ("ga4:0042", "ean:0000000000017", 12.5, 1.0, datetime(2026, 3, 1, 4, 4, 4)),
    ]
    assert query(workspace, "select user_id, item_id, value, quantity, ts from events where value < 0") == [
        ("ga4:455803273.1708765818", "ean:0812359021009", -2598.0, 2.0, datetime(2026, 3, 1, 10, 4, 4)),
    ]


def test_a_column_an_expression_computes_with_is_typed_first(tmp_path, workspace):
    """Helper 29, against a first version that kept text wherever DuckDB could bind it: text compares as
    text (greatest('9.50', '10.00') is 9.50), an integer literal rounds it ('0.40' = 0), `::timestamp` drops
    an offset, and `::double` on `n/a` refused the file where the typed column quarantines the row."""
    spec = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "customer"
item_id = "sku"
event_type = "CASE WHEN price = 0 THEN 'view' ELSE 'purchase' END"
ts = "created_at::timestamp"
value = "greatest(price, compare_at)"
quantity = "qty::double"
"""
    rows = ["customer,sku,price,compare_at,qty,created_at", "u1,s1,9.50,10.00,1,2026-03-01T05:04:04-05:00"]
    rows += [f"u{c},s{c},0.40,0.30,2,2026-03-02 05:04:04" for c in range(2, 21)] + [
        "u21,s21,1,1,n/a,2026-03-03"
    ]
    header, *lines = (f"{row}\n" for row in rows)
    report = ingest(write_source(tmp_path / "shop", lines, spec, header), workspace)
    assert [(f.rows_read, f.rows_inserted, f.rows_quarantined) for f in report.files] == [(21, 20, 1)]
    assert query(workspace, "select user_id, event_type, ts, value, quantity from events where user_id in ('u1', 'u2') order by 1") == [
        ("u1", "purchase", datetime(2026, 3, 1, 10, 4, 4), 10.0, 1.0),
        ("u2", "purchase", datetime(2026, 3, 2, 5, 4, 4), 0.4, 2.0),
    ]  # fmt: skip
    assert query(workspace, "select reason from quarantine") == [("column qty: not a BIGINT ('n/a')",)]


CODES_SPEC = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "customer"
item_id = "sku"
event_type = "{event_type}"
ts = "day"
{extra}"""


def codes_file(tmp_path: Path, values: list[str], event_type: str, extra: str = "") -> Path:
    lines = [f"u{i % 5},s{i % 7},2026-03-{1 + i % 28:02d} 10:00:00,{v}\n" for i, v in enumerate(values)]
    spec = CODES_SPEC.format(event_type=event_type, extra=extra)
    return write_source(tmp_path / "shop", lines, spec, header="customer,sku,day,code\n")


def test_a_mostly_numeric_column_compared_with_text_is_read_as_text(tmp_path, workspace):
    """A status code column, numbers but for one `X`, compared with 'X' and '100': typed BIGINT by its values,
    the comparison made DuckDB convert 'X' to a number and refused the file ("Could not convert string 'X'
    to INT64"); it runs on the column's text now."""
    codes = ["X" if i == 5 else str(100 + i % 4) for i in range(40)]
    event_type = (
        "CASE WHEN code = 'X' THEN 'return' WHEN code in ('100', '101') THEN 'view' ELSE 'purchase' END"
    )
    (outcome,) = ingest(codes_file(tmp_path, codes, event_type), workspace).files
    assert (outcome.status, outcome.rows_inserted, outcome.rows_quarantined) == ("ingested", 40, 0)
    assert query(workspace, "select event_type, count(*) from events group by 1 order by 1") == [
        ("purchase", 20), ("return", 1), ("view", 19)
    ]  # fmt: skip


def test_a_column_of_mostly_text_compared_with_a_number_quarantines_its_text(tmp_path, workspace):
    """`price = 0` on a price column a third `n/a`: left text (under 90% numbers), DuckDB's conversion refused
    the file with "cannot be mapped: Conversion Error" and no mapping named; its text values are now
    quarantined with the column named, and the bad share decides."""
    prices = ["n/a" if i % 3 == 0 else f"{i}.50" for i in range(40)]
    path = codes_file(tmp_path, prices, "CASE WHEN code = 0 THEN 'view' ELSE 'purchase' END")
    with pytest.raises(IngestFailedError) as raised:
        ingest(path, workspace)
    assert "14 of 40 rows are bad (35.0% > max-bad-fraction 5.0%); top reasons: column code: not a DOUBLE, e.g. 'n/a' (14)" in str(raised.value)  # fmt: skip
    (outcome,) = ingest(path, workspace, max_bad_fraction=0.5).files
    assert (outcome.rows_inserted, outcome.rows_quarantined) == (26, 14)


def test_an_expression_on_text_no_type_fits_says_how_to_convert_it(tmp_path, workspace):
    """`price * qty` where every price has a thousands separator said only `*(VARCHAR, BIGINT)`."""
    path = codes_file(tmp_path, [f'"1,{i:03d}.50"' for i in range(10)], "'purchase'", 'value = "code * 2"')
    with pytest.raises(SourceSpecError) as raised:
        ingest(path, workspace)
    assert (
        "it computes with code (e.g. '1,000.50'), text in this file (too few of its values read as a number or a "
        "time): convert it in the expression, e.g. try_cast(replace(code, ',', '') AS DOUBLE)"
    ) in str(raised.value)


def test_a_case_that_fails_on_a_row_is_named(tmp_path, workspace):
    """An expression whose CASE fails on a row: the refusal said "cannot be mapped" without naming it."""
    days = ["03/01/2026"] * 9 + ["tomorrow"]
    event_type = "CASE WHEN strptime(code, '%d/%m/%Y') > DATE '2026-02-01' THEN 'view' ELSE 'purchase' END"
    with pytest.raises(IngestFailedError) as raised:
        ingest(codes_file(tmp_path, days, event_type), workspace)
    assert f"the expression for event_type = {event_type!r} (source.toml line 8) fails on a row of this file: Invalid Input Error: Could not parse string \"tomorrow\"" in str(raised.value)  # fmt: skip


def test_a_column_read_only_as_text_keeps_every_character(tmp_path, workspace):
    """Helper 30: a bare item_id read 1003.0 where another mapping computed with sku; `'SHOE1-' || size`
    made SHOE1-9.0; `day || ' ' || time` was typed as a time and rewritten; the user's own try_cast was
    overridden by a quarantine."""
    spec = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "customer"
item_id = "sku"
event_type = "'purchase'"
ts = "day || ' ' || time"
value = "coalesce(try_cast(price as double), 0)"
quantity = "CASE WHEN sku::double > 1000 THEN 2 ELSE 1 END"
session_id = "'SHOE1-' || size"
"""
    rows = ["customer,sku,size,price,day,time", "u1,0042,9,n/a,2024-03-01,10:00:00"]
    rows += [
        f"u{c},{1000 + c},{'9.5' if c % 2 else '10'},1.5,2024-03-0{c % 9 + 1},11:00:00" for c in range(2, 12)
    ]
    header, *lines = (f"{row}\n" for row in rows)
    report = ingest(write_source(tmp_path / "shop", lines, spec, header), workspace)
    assert [(f.rows_read, f.rows_inserted, f.rows_quarantined) for f in report.files] == [(11, 11, 0)]
    assert query(workspace, "select user_id, item_id, ts, value, quantity, session_id from events where user_id in ('u1', 'u2', 'u3') order by 1") == [
        ("u1", "0042", datetime(2024, 3, 1, 10, 0), 0.0, 1.0, "SHOE1-9"),
        ("u2", "1002", datetime(2024, 3, 3, 11, 0), 1.5, 2.0, "SHOE1-10"),
        ("u3", "1003", datetime(2024, 3, 4, 11, 0), 1.5, 2.0, "SHOE1-9.5"),
    ]  # fmt: skip


def test_a_column_one_expression_types_keeps_its_text_where_another_reads_it_as_text(tmp_path, workspace):
    """Helper 30 (c12, c13): one column had one type in a file, so `size > 9` typing size made
    `'SHOE-' || size` read `9.0` for `9`, and `replace(price, '.', ',')` on the typed price refused the spec
    ("No function matches replace(DOUBLE, ...)"). Each expression reads the column as it uses it."""
    spec = """
name = "shop"
[events]
path = "events.csv"
[events.columns]
user_id = "customer"
item_id = "'SHOE-' || sku || '-' || size"
event_type = "CASE WHEN size > 9 THEN 'purchase' ELSE 'view' END"
ts = "day"
item_title = "'size ' || size || ', ' || replace(price, '.', ',') || ' EUR'"
value = "price * 2"
"""
    rows = [f"u{i % 5},{i % 7:04d},2024-03-{1 + i % 28:02d} 10:00:00,{9 + i % 3},{i}.50\n" for i in range(30)]
    report = ingest(write_source(tmp_path / "shop", rows, spec, "customer,sku,day,size,price\n"), workspace)
    assert [(f.rows_inserted, f.rows_quarantined) for f in report.files] == [(30, 0)]
    assert query(workspace, "select item_id, event_type, value from events order by value limit 3") == [
        ("SHOE-0000-9", "view", 1.0), ("SHOE-0001-10", "purchase", 3.0), ("SHOE-0002-11", "purchase", 5.0)
    ]  # fmt: skip
    assert query(workspace, "select title from items where item_id = 'SHOE-0004-11'") == [
        ("size 11, 11,50 EUR",)
    ]
    assert query(workspace, "select count(*) from items where title like '%.%'") == [(0,)]


def test_parquet_and_tsv_files_and_epoch_timestamps(tmp_path, workspace):
    folder = tmp_path / "mixed"
    folder.mkdir()
    con = duckdb.connect()
    con.execute(
        f"copy (select 'u' || (i % 5) as uid, 'i' || (i % 3) as iid, 'play' as kind, 1700000000 + i * 60 as epoch "
        f"from range(30) t(i)) to '{folder / 'plays.parquet'}' (format parquet)"
    )
    (folder / "more.tsv").write_text(  # milliseconds, microseconds (GA4), nanoseconds
        "uid\tiid\tkind\tepoch\nu9\ti1\tlike\t1700000000000\nu7\ti1\tlike\t1700000000123456\n"
        "u8\ti1\tlike\t1700000000123456789\n"
    )
    spec = 'name = "mixed"\n[events]\npath = "."\n[events.columns]\nuser_id = "uid"\nitem_id = "iid"\nevent_type = "kind"\nts = "epoch"\n'
    (folder / "source.toml").write_text(spec)
    report = ingest(folder / "source.toml", workspace)
    assert sorted((Path(f.file).name, f.rows_inserted) for f in report.files) == [
        ("more.tsv", 3),
        ("plays.parquet", 30),
    ]
    assert query(
        workspace, "select user_id, ts from events where user_id in ('u7', 'u8', 'u9') order by 1"
    ) == [
        ("u7", datetime(2023, 11, 14, 22, 13, 20, 123456)),
        ("u8", datetime(2023, 11, 14, 22, 13, 20, 123456)),
        ("u9", datetime(2023, 11, 14, 22, 13, 20)),
    ]
    assert query(workspace, "select min(ts) from events where event_type = 'play'") == [
        (datetime(2023, 11, 14, 22, 13, 20),)
    ]


def test_an_expression_duckdb_rejects_names_its_line_and_the_file_columns(tmp_path, workspace):
    spec = SPEC.replace('value = "value"', 'value = "round(value, 1, 2)"')
    with pytest.raises(SourceSpecError) as raised:
        ingest(write_source(tmp_path / "src", GOOD_ROWS[:3], spec), workspace)
    message = str(raised.value)
    assert "source.toml line 10: DuckDB rejects the expression for value = 'round(value, 1, 2)'" in message
    assert "columns in events.csv: event_id, user_id, item_id, event_type, ts, value" in message


def test_a_file_without_a_column_the_spec_reads_is_refused_and_the_others_are_ingested(tmp_path, workspace):
    """A daily export that renamed a column stopped the whole ingest (a SourceSpecError at that file); it is
    refused like any file that cannot be read, naming the column and its own."""
    folder = tmp_path / "src"
    write_source(folder, GOOD_ROWS[:3], name="day1.csv")
    write_source(folder, GOOD_ROWS[3:5], header=HEADER.replace("value", "amount"), name="day2.csv")
    write_source(folder, GOOD_ROWS[5:9], name="day3.csv", spec=SPEC.replace('"events.csv"', '"."'))
    with pytest.raises(IngestFailedError) as raised:
        ingest(folder / "source.toml", workspace)
    assert str(raised.value) == (
        f"{(folder / 'day2.csv').resolve()}: the expression for value = 'value' (source.toml line 10) reads value, "
        "which this file does not have (its columns: event_id, user_id, item_id, event_type, ts, amount); the "
        "file is refused. Give files of this layout a feed of their own"
    )
    assert [
        (Path(f.file).name, f.status, f.rows_read, f.rows_inserted) for f in raised.value.report.files
    ] == [
        ("day1.csv", "ingested", 3, 3),
        ("day2.csv", "rejected", 2, 0),
        ("day3.csv", "ingested", 4, 4),
    ]


def test_a_column_a_file_lacks_is_found_from_its_header_before_ingest(tmp_path):
    """check_file_columns (the CLI's check before a workspace is made) reads headers only: a CSV's first line,
    a Parquet schema; names are case-insensitive, as in DuckDB."""
    spec = SPEC.replace('value = "value"', 'value = "valu * 2"')
    with pytest.raises(SourceSpecError) as raised:
        check_file_columns(parse_source_spec(write_source(tmp_path / "csv", GOOD_ROWS[:3], spec)))
    assert str(raised.value) == (
        "source.toml line 10: the expression for value = 'valu * 2' reads valu, which events.csv does not have "
        "(its columns: event_id, user_id, item_id, event_type, ts, value)"
    )
    folder = tmp_path / "parquet"
    folder.mkdir()
    duckdb.sql("select 'u1' as User_Id, 'i1' as item_id, 'view' as kind, 1700000000 as ts").write_parquet(
        str(folder / "events.parquet")
    )
    spec = SPEC.replace("events.csv", "events.parquet").replace('value = "value"\n', "")
    (folder / "source.toml").write_text(spec)
    with pytest.raises(SourceSpecError, match=r"line 8: the expression for event_type = 'event_type' reads "
                       r"event_type, which events.parquet does not have \(its columns: User_Id, item_id, kind, ts\)"):  # fmt: skip
        check_file_columns(parse_source_spec(folder / "source.toml"))
    (folder / "source.toml").write_text(spec.replace('event_type = "event_type"', 'event_type = "KIND"'))
    check_file_columns(parse_source_spec(folder / "source.toml"))  # user_id matches User_Id


def test_an_error_echoes_a_keyword_column_as_the_spec_wrote_it(tmp_path):
    """A bare keyword (`at`) is read as the file's quoted column, but the message quotes the spec's line."""
    spec = SPEC.replace('ts = "ts"', 'ts = "at"')
    with pytest.raises(SourceSpecError) as raised:
        check_file_columns(parse_source_spec(write_source(tmp_path, GOOD_ROWS[:3], spec)))
    assert str(raised.value).startswith("source.toml line 9: the expression for ts = 'at' reads at, which ")


@pytest.mark.parametrize(
    ("name", "content", "expression"),
    [
        ("events.csv", HEADER + GOOD_ROWS[0], "list_aggregate(list_transform([value], x -> x), 'max')"),
        ("events.csv", HEADER + GOOD_ROWS[0], "value.amount"),  # a struct's field, or a column of a table
        ("events.csv", "", "nosuch"),  # empty: ingest skips it and says so
        ("events.jsonl", '{"event_id": "e1"}\n', "nosuch"),  # a JSON file's columns are all its lines' keys
        ("events.csv", HEADER, "nosuch"),  # a header but no rows: ingest warns and reads nothing
        ("events.csv", HEADER + GOOD_ROWS[0], "year(current_date)"),  # a value DuckDB names without a table
        ("events.csv", HEADER + GOOD_ROWS[0], "length(to_json(src)) + _row"),  # ingest's query's own columns
    ],
)
def test_what_only_ingest_can_tell_is_left_to_it(tmp_path, name, content, expression):
    spec = SPEC.replace("events.csv", name).replace('value = "value"', f"value = {json.dumps(expression)}")
    check_file_columns(parse_source_spec(write_source(tmp_path, [], spec, header=content, name=name)))


def test_hive_partition_folders_and_empty_parquet_files_are_read_as_ingest_reads_them(tmp_path):
    """DuckDB adds a column for each key=value folder of a file's path; a Parquet file without rows is read
    as nothing (helper 20: both were refused, and ingest took them)."""
    spec = SPEC.replace('path = "events.csv"', 'path = "events"').replace(
        'value = "value"', 'session_id = "dt"'
    )
    (tmp_path / "source.toml").write_text(spec)
    for day, n_rows in (("2024-01-01", 3), ("2024-01-02", 0)):
        folder = tmp_path / "events" / f"dt={day}"
        folder.mkdir(parents=True)
        duckdb.sql(
            f"select 'u' || i as user_id, 'i1' as item_id, 'view' as event_type, 1700000000 as ts, 'x' as nosuch "
            f"from range({n_rows}) t(i)"
        ).write_parquet(str(folder / "part-0.parquet"))
    check_file_columns(parse_source_spec(tmp_path / "source.toml"))
    (tmp_path / "source.toml").write_text(spec.replace('session_id = "dt"', 'session_id = "day"'))
    with pytest.raises(SourceSpecError, match=r"reads day, which none of its 2 files has \(the columns of "
                       r"part-0.parquet: user_id, item_id, event_type, ts, nosuch, dt\)"):  # fmt: skip
        check_file_columns(parse_source_spec(tmp_path / "source.toml"))
    only_empty = spec.replace('"events"', '"events/dt=2024-01-02"').replace(
        'session_id = "dt"', 'session_id = "day"'
    )
    (tmp_path / "source.toml").write_text(only_empty)
    check_file_columns(parse_source_spec(tmp_path / "source.toml"))  # no rows: left to ingest, which warns


def test_files_the_warehouse_has_ingested_are_not_read(tmp_path, workspace):
    """A spec changed ahead of a renamed column (item_id = "sku") while the folder still holds the exports
    ingested under the old name, here moved to another folder: ingest skips them by content, so the check
    must not refuse (helpers 20, 21); a manifest it cannot read (a writer holds the warehouse) checks nothing."""
    ingest(write_source(tmp_path / "src", GOOD_ROWS[:3]), workspace)
    (tmp_path / "src").rename(tmp_path / "archive")
    renamed = parse_source_spec(
        write_source(tmp_path / "archive", GOOD_ROWS[:3], SPEC.replace('"item_id"', '"sku"'))
    )
    with pytest.raises(SourceSpecError, match="reads sku, which events.csv does not have"):
        check_file_columns(renamed)
    ingested = ingested_contents(workspace / "warehouse.duckdb")
    assert ingested == {("events", file_sha256(tmp_path / "archive" / "events.csv"))}
    # Not refused, but said (newcomer, stop 28: `ts = "tss"` on ingested files passed without a word).
    assert check_file_columns(renamed, ingested) == [
        "source.toml line 7: item_id = 'sku' reads sku, which its file does not have; it was ingested before "
        "and is not read again (a changed mapping does not change rows already in the warehouse), but a new "
        "file of this layout would be refused"
    ]
    assert check_file_columns(renamed, None) == []
    assert ingested_contents(tmp_path / "no" / "warehouse.duckdb") == set()
    holder = duckdb.connect(str(workspace / "warehouse.duckdb"))  # a writer holds it: cannot be read now
    try:
        assert ingested_contents(workspace / "warehouse.duckdb") is None
    finally:
        holder.close()


def test_names_are_compared_as_duckdb_compares_them(tmp_path):
    """Only ASCII letters ignore case in DuckDB (`ünit` does not find `Ünit`), and a Parquet file's repeated
    name is DuckDB's `TS_1` (helper 21)."""
    spec = SPEC.replace('value = "value"', 'value = "ünit"')
    header = HEADER.replace("value", "Ünit")
    with pytest.raises(SourceSpecError, match="reads ünit, which events.csv does not have"):
        check_file_columns(parse_source_spec(write_source(tmp_path / "csv", GOOD_ROWS[:2], spec, header)))
    folder = tmp_path / "parquet"
    folder.mkdir()
    duckdb.sql(
        "select 'u1' as user_id, 'i1' as item_id, 'view' as event_type, 1700000000 as ts, 1 as TS"
    ).write_parquet(str(folder / "events.parquet"))
    spec = SPEC.replace("events.csv", "events.parquet").replace('value = "value"', 'value = "TS_1"')
    (folder / "source.toml").write_text(spec)
    check_file_columns(parse_source_spec(folder / "source.toml"))


def test_a_file_named_by_two_feeds_of_one_kind_is_a_spec_error(tmp_path):
    """The second feed's events were never ingested: its copy of the file was skipped as already ingested,
    without a word (helper 21). An items feed may read a file an events feed reads."""
    feed = SPEC[SPEC.index("[events]") :].replace("[events]", "[[events]]")
    second = feed.replace('event_type = "event_type"', "event_type = \"'buy'\"")
    spec = write_source(tmp_path, GOOD_ROWS[:3], SPEC[: SPEC.index("[events]")] + feed + second)
    with pytest.raises(SourceSpecError) as raised:
        discover_files(parse_source_spec(spec))
    assert str(raised.value) == (
        "events.csv is named by two events feeds (mapped at source.toml line 6 and source.toml line 14): a file "
        "is ingested once, by its content, so the second would never be read; map the file in one feed"
    )
    items = '[items]\npath = "events.csv"\n[items.columns]\nitem_id = "item_id"\n'
    spec.write_text(SPEC + items)
    assert [f.kind for f in discover_files(parse_source_spec(spec))] == ["items", "events"]


def test_a_ts_one_hour_ahead_is_accepted(tmp_path, workspace):
    soon = (datetime.utcnow() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    report = ingest(write_source(tmp_path / "src", [f"a,u1,i1,view,{soon},\n"]), workspace)
    assert report.files[0].rows_inserted == 1


def test_movielens_100k_layout(tmp_path, workspace):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881251000\n")
    flags = "|".join(["0"] * 19)
    item = "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(["0"] * 5 + ["1"] + ["0"] * 13) + "\n"
    item += (
        "302|L.A. Confidential (1997)|01-Jan-1997||http://y|"
        + "|".join(["0"] * 6 + ["1"] + ["0"] * 9 + ["1"] + ["0"] * 2)
        + "\n"
    )
    item += "303|Caf\xe9 (1997)|01-Jan-1997||http://z|" + flags + "\n"
    (folder / "u.item").write_bytes(item.encode("latin-1"))
    ingest_events(source=f"movielens:{folder}", workspace=str(workspace))
    assert query(workspace, "select user_id, item_id, event_type, value, ts from events order by ts")[0] == (
        "196", "242", "rate", 3.0, datetime(1997, 12, 4, 15, 55, 49),
    )  # fmt: skip
    assert query(workspace, "select item_id, title, category from items order by item_id") == [
        ("242", "Kolya (1996)", "Comedy"), ("302", "L.A. Confidential (1997)", "Crime|Thriller"), ("303", "Café (1997)", None),
    ]  # fmt: skip


def test_movielens_1m_layout(tmp_path, workspace):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::\"Great\" Peach (1996)::Animation|Children's\n".encode(
            "latin-1"
        )
    )
    report = ingest_events(source=f"movielens:{folder}", workspace=str(workspace))
    assert [(f.kind, f.rows_inserted) for f in report.files] == [("items", 2), ("events", 3)]
    assert query(workspace, "select count(*), count(distinct user_id), sum(value) from events") == [
        (3, 2, 12.0)
    ]
    assert query(workspace, "select title from items where item_id = '661'") == [('"Great" Peach (1996)',)]


def test_a_missing_movielens_folder_is_a_clear_error(tmp_path, workspace):
    with pytest.raises(SourceSpecError, match="no MovieLens files found"):
        ingest_events(source=f"movielens:{tmp_path}", workspace=str(workspace))


def test_a_quoted_value_across_lines_is_one_row_when_it_closes(tmp_path, workspace):
    spec = SPEC.replace('value = "value"', 'value = "value"\nitem_title = "title"')
    rows = [
        'a,u1,i1,view,2024-03-01 10:00:00,,"a title\non two lines"\n',
        "b,u2,i2,view,2024-03-01 10:00:00,,plain\n",
    ]
    report = ingest(
        write_source(tmp_path / "src", rows, spec, header=HEADER.rstrip("\n") + ",title\n"), workspace
    )
    assert [(f.rows_read, f.rows_inserted) for f in report.files] == [(2, 2)]
    assert query(workspace, "select item_title from events order by user_id") == [
        ("a title\non two lines",),
        ("plain",),
    ]


def test_a_stray_quote_in_a_gzip_file_costs_its_own_row_and_every_later_row_is_read(tmp_path, workspace):
    rows = list(GOOD_ROWS)
    rows[19] = rows[19].replace(",view,", ',"view,')  # data row 20 opens a quote that never closes
    folder = tmp_path / "src"
    folder.mkdir()
    with gzip.open(folder / "events.csv.gz", "wt") as handle:
        handle.write(HEADER + "".join(rows))
    (folder / "source.toml").write_text(SPEC.replace('"events.csv"', '"events.csv.gz"'))
    report = ingest(folder / "source.toml", workspace)
    (outcome,) = report.files
    assert (outcome.rows_read, outcome.rows_inserted, outcome.rows_quarantined) == (100, 99, 1)
    assert [(n, reason) for n, reason, _ in quarantined(workspace)] == [
        (
            20,
            "malformed line: unterminated quote (a quoted value opens on this line and no later line closes it "
            "into a record)",
        )
    ]
    assert query(workspace, "select count(*) from events where event_type = 'view'") == [(99,)]


def test_the_manifest_keeps_a_validation_warning_as_the_files_message():
    con = duckdb.connect()
    create_warehouse_tables(con)
    tags = FileOutcome("s", "tags.dat", "events", "x", "b", FileStatus.INGESTED, rows_read=3, rows_inserted=3)
    warning = "event_type mix within 25 points of the warehouse: 2 of 2 event types unexpected"
    record_manifest(con, replace(tags, warnings=(warning,)))
    record_manifest(con, replace(tags, file="plays.dat"))
    assert con.execute("select file, message from ingest_manifest order by file").fetchall() == [
        ("plays.dat", None),
        ("tags.dat", warning),
    ]
