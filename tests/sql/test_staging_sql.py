"""The staging and warehouse SQL files on a few given rows, with the exact rows they must produce."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from tasks.warehouse import create_warehouse_tables, load_sql

NOW = datetime(2024, 6, 1, 12, 0, 0)
MAPPED_COLUMNS = (
    "_row bigint, cast_error varchar, user_id varchar, item_id varchar, event_type varchar, ts timestamp, "
    "ts_text varchar, value double, value_text varchar, quantity double, quantity_text varchar, "
    "session_id varchar, event_id varchar, item_title varchar, item_category varchar, timezone varchar, "
    "timezone_text varchar"
)


@pytest.fixture
def con():
    con = duckdb.connect(":memory:")
    create_warehouse_tables(con)
    con.execute(f"create table stg_events_mapped ({MAPPED_COLUMNS})")
    yield con
    con.close()


def given_mapped(con, rows: list[tuple]) -> None:
    con.executemany("insert into stg_events_mapped values (" + ", ".join(["?"] * 17) + ")", rows)
    # dedup_key is made by the map step (tasks/ingest.py) in exactly this way.
    con.execute(
        "create or replace table stg_events_mapped as select *, case when event_id is null then "
        "hash(user_id, item_id, event_type, ts) else hash('event_id', event_id) end as dedup_key from stg_events_mapped"
    )


def row(n, user="u1", item="i1", event_type="view", ts=datetime(2024, 5, 1), ts_text="2024-05-01", value=None,
        value_text=None, cast_error=None, event_id=None, timezone=None, timezone_text=None):  # fmt: skip
    return (
        n,
        cast_error,
        user,
        item,
        event_type,
        ts,
        ts_text,
        value,
        value_text,
        None,
        None,
        None,
        event_id,
        None,
        None,
        timezone,
        timezone_text,
    )


def test_stg_events_rejected_gives_the_first_reason_of_each_bad_row(con):
    given_mapped(con, [
        row(1),
        row(2, user=None),
        row(3, ts=None, ts_text="soon"),
        row(4, ts=datetime(2024, 6, 2, 13), ts_text="x"),
        row(5, ts=datetime(2024, 6, 2, 11), ts_text="x"),
        row(6, ts=datetime(1989, 1, 1), ts_text="x"),
        row(7, event_type="teleport"),
        row(8, value=None, value_text="n/a"),
        row(9, user=None, cast_error="column qty: not a BIGINT ('x')"),
        row(10, timezone=None, timezone_text="Mars/Olympus"),
        row(11, timezone="Europe/Berlin", timezone_text=None),
    ])  # fmt: skip
    sql = load_sql("staging/stg_events_rejected")
    got = con.execute(
        f"select _row, reason from ({sql}) order by _row", {"now": NOW, "event_types": ["view"]}
    ).fetchall()
    assert got == [
        (2, "user_id: missing (null or empty)"),
        (3, "ts: does not parse as a timestamp ('soon')"),
        (4, "ts: more than a day in the future ('2024-06-02 13:00:00')"),
        (6, "ts: before 1990 ('1989-01-01 00:00:00')"),
        (7, "event_type: not in the configured set ('teleport')"),
        (8, "value: not numeric ('n/a')"),
        (9, "column qty: not a BIGINT ('x')"),
        (10, "timezone: not a time zone name or UTC offset ('Mars/Olympus')"),
    ]


def test_stg_events_rejected_quarantines_non_finite_numbers_and_control_characters_in_ids(con):
    given_mapped(con, [
        row(1, value=float("nan")),
        row(2, value=float("-inf")),
        row(3, user="u\x001"),
        row(4, item="i\x1b[31m"),
        row(5, ts=None, ts_text="x" * 500),
        row(6, value=2.5),
    ])  # fmt: skip
    con.execute("update stg_events_mapped set quantity = 'inf'::double where _row = 6")
    sql = load_sql("staging/stg_events_rejected")
    got = con.execute(
        f"select _row, reason from ({sql}) order by _row", {"now": NOW, "event_types": ["view"]}
    ).fetchall()
    assert got == [
        (1, "value: not a finite number (nan)"),
        (2, "value: not a finite number (-inf)"),
        (3, "user_id: contains a control character (U+0000)"),
        (4, "item_id: contains a control character (U+001B)"),
        (5, "ts: does not parse as a timestamp ('" + "x" * 100 + "')"),
        (6, "quantity: not a finite number (inf)"),
    ]


def test_stg_items_rejected_quarantines_a_non_finite_price_and_control_characters(con):
    con.execute(
        "create table stg_items_mapped as select * from (values"
        " (1, null, 'a', 1.0, null), (2, null, 'b', 'nan'::double, null), (3, null, 'c' || chr(0), 1.0, null),"
        " (4, null, 'd', null, 'free')"
        ") t(_row, cast_error, item_id, price, price_text)"
    )
    got = con.execute(
        f"select _row, reason from ({load_sql('staging/stg_items_rejected')}) order by 1"
    ).fetchall()
    assert got == [
        (2, "price: not a finite number (nan)"),
        (3, "item_id: contains a control character (U+0000)"),
        (4, "price: not numeric ('free')"),
    ]


def test_stg_events_duplicates_finds_repeats_in_the_batch_and_events_already_stored(con):
    con.execute(
        "insert into events values ('u1', 'i9', 'view', '2024-05-01', null, null, null, null, null, null, 's', 'b', '2024-05-02', null),"
        " ('u7', 'i7', 'view', '2024-05-01', null, null, null, 'e7', null, null, 's', 'b', '2024-05-02', null)"
    )
    given_mapped(con, [
        row(1), row(2), row(3, value=1.0, value_text="1"), row(4, item="i9"), row(5, user="u2", event_id="e7"),
        row(6, user="u3", event_id="e8"), row(7, user="u4", event_id="e8"), row(8, user=None),
    ])  # fmt: skip
    con.execute(
        f"create table stg_events_rejected as {load_sql('staging/stg_events_rejected')}",
        {"now": NOW, "event_types": ["view"]},
    )
    con.execute(f"create table stg_events_duplicates as {load_sql('staging/stg_events_duplicates')}")
    assert con.execute("select _row from stg_events_duplicates order by 1").fetchall() == [
        (2,),
        (4,),
        (5,),
        (7,),
    ]
    new = con.execute(f"select _row from ({load_sql('staging/stg_events_new')}) order by 1").fetchall()
    assert new == [(1,), (3,), (6,)]  # row 8 is rejected: no user_id


def test_upsert_items_from_events_names_items_and_keeps_catalogue_text(con):
    con.execute("insert into items values ('i1', 'Old', null, 3.0, 'catalogue text', '2024-01-01')")
    con.execute(
        "create table stg_events_new as select * from (values"
        " ('i1', 'New title', 'tools', timestamp '2024-05-01'),"
        " ('i2', 'Hammer', null, timestamp '2024-05-01'),"
        " ('i2', 'Hammer XL', 'tools', timestamp '2024-05-03'),"
        " ('i3', null, null, timestamp '2024-05-03')"
        ") t(item_id, item_title, item_category, ts)"
    )
    con.execute(load_sql("warehouse/upsert_items_from_events"), {"updated_at": NOW})
    assert con.execute("select item_id, title, category, price, text from items order by 1").fetchall() == [
        ("i1", "New title", "tools", 3.0, "catalogue text"),
        ("i2", "Hammer XL", "tools", None, "Hammer XL tools"),
    ]
