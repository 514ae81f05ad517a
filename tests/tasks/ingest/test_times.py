"""Every accepted form of `ts` is stored as UTC: ISO text (naive, or with an offset in each spelling), a date,
epoch seconds and milliseconds, Parquet timestamps with and without a zone; a time without a zone is the
source's local time when its spec names a `timezone`. Run on the ingest steps themselves (no Prefect), on a
connection whose own zone is not UTC, as on a user's laptop."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from tasks.ingest.files import FileOutcome, FileStatus, SourceFile, prepare_file
from tasks.ingest.sources import DEFAULT_EVENT_TYPES, Feed
from tasks.warehouse import create_warehouse_tables


def mapped_ts(tmp_path: Path, name: str, ts: str = "ts", timezone: str = "UTC") -> list[datetime]:
    """The `ts` of every row of the file, as the ingest would insert it (of a source in `timezone`)."""
    path = tmp_path / name
    feed = Feed(
        kind="events",
        path=str(path),
        columns={"user_id": "'u1'", "item_id": "'i1'", "event_type": "'view'", "ts": ts},
    )
    file = SourceFile(source="s", feed=feed, path=path, format=feed.format_for(path), timezone=timezone)
    con = duckdb.connect(":memory:")
    try:
        create_warehouse_tables(con)
        con.execute("set TimeZone = 'America/New_York'")  # a machine not on UTC
        outcome = FileOutcome(source="s", file=str(path), kind="events", sha256="x", batch_id="b")
        outcome = prepare_file(con, outcome, file, DEFAULT_EVENT_TYPES, max_bad_fraction=1.0)
        assert outcome.status is FileStatus.STAGED, outcome.message
        return [ts for (ts,) in con.execute("select ts from stg_events_mapped order by _row").fetchall()]
    finally:
        con.close()


def write_parquets(folder: Path, files: dict[str, str]) -> None:
    """One Parquet file per name, of the SELECT given for it, written in UTC."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for name, sql in files.items():
        con.execute(f"copy ({sql}) to '{folder / name}' (format parquet)")
    con.close()


def csv_ts(tmp_path: Path, value: str, ts: str = "ts") -> datetime:
    (tmp_path / "e.csv").write_text(f"ts\n{value}\n")
    (got,) = mapped_ts(tmp_path, "e.csv", ts)
    return got


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-01-01T01:02:32+02:00", datetime(2023, 12, 31, 23, 2, 32)),
        ("2024-01-01T01:02:32+0200", datetime(2023, 12, 31, 23, 2, 32)),
        ("2024-01-01T01:02:32+02", datetime(2023, 12, 31, 23, 2, 32)),
        ("2024-01-01T01:02:32Z", datetime(2024, 1, 1, 1, 2, 32)),
        ("2024-01-01T01:02:32-05:00", datetime(2024, 1, 1, 6, 2, 32)),
        ("2024-01-01 01:02:32+02:00", datetime(2023, 12, 31, 23, 2, 32)),
        ("2024-01-01 01:02:32.5-05:00", datetime(2024, 1, 1, 6, 2, 32, 500000)),
        ("2024-01-01 01:02:32 UTC", datetime(2024, 1, 1, 1, 2, 32)),
        ("2024-01-01 01:02:32 +14:00", datetime(2023, 12, 31, 11, 2, 32)),  # Kiribati, the largest offset
        ("2024-01-01 01:02:32-12:00", datetime(2024, 1, 1, 13, 2, 32)),
    ],
)
def test_iso_text_with_an_offset_is_converted_to_utc(tmp_path, text, utc):
    assert csv_ts(tmp_path, text) == utc


@pytest.mark.parametrize("text", ["2024-01-01T01:02:32", "2024-01-01 01:02:32"])
def test_iso_text_without_a_zone_is_taken_as_utc_whatever_the_machine_zone(tmp_path, text):
    assert csv_ts(tmp_path, text) == datetime(2024, 1, 1, 1, 2, 32)


def test_a_date_is_midnight_utc(tmp_path):
    assert csv_ts(tmp_path, "2024-01-01") == datetime(2024, 1, 1)


def test_epoch_seconds_and_milliseconds(tmp_path):
    (tmp_path / "e.csv").write_text("ts\n1704070952\n1704070952250\n")
    assert mapped_ts(tmp_path, "e.csv") == [
        datetime(2024, 1, 1, 1, 2, 32),
        datetime(2024, 1, 1, 1, 2, 32, 250000),
    ]


def test_an_expression_over_zoned_text_keeps_the_offset(tmp_path):
    # `stamp` is used inside an expression, so it is typed: as a zoned timestamp, not a naive one.
    (tmp_path / "e.csv").write_text("stamp\n2024-01-01T01:02:32+02:00\n")
    assert mapped_ts(tmp_path, "e.csv", ts="stamp + interval 1 hour") == [datetime(2024, 1, 1, 0, 2, 32)]


def test_strptime_with_a_zone_directive(tmp_path):
    (tmp_path / "e.csv").write_text("ts\n01/01/2024 01:02:32 +0200\n")
    assert mapped_ts(tmp_path, "e.csv", ts="strptime(ts, '%d/%m/%Y %H:%M:%S %z')") == [
        datetime(2023, 12, 31, 23, 2, 32)
    ]


def test_parquet_timestamps_with_and_without_a_zone(tmp_path):
    write_parquets(
        tmp_path,
        {
            "naive.parquet": "select timestamp '2024-01-01 01:02:32' as ts",
            "zoned.parquet": "select timestamptz '2024-01-01 01:02:32+02:00' as ts",
            "date.parquet": "select date '2024-01-01' as ts",
            "epoch.parquet": "select 1704070952::bigint as ts",
        },
    )
    assert mapped_ts(tmp_path, "naive.parquet") == [datetime(2024, 1, 1, 1, 2, 32)]
    assert mapped_ts(tmp_path, "zoned.parquet") == [datetime(2023, 12, 31, 23, 2, 32)]
    assert mapped_ts(tmp_path, "date.parquet") == [datetime(2024, 1, 1)]
    assert mapped_ts(tmp_path, "epoch.parquet") == [datetime(2024, 1, 1, 1, 2, 32)]


def test_text_that_is_no_time_becomes_null_and_is_quarantined_not_an_error(tmp_path):
    (tmp_path / "e.csv").write_text("ts\nsoon\nNaN\n1e300\n")
    assert mapped_ts(tmp_path, "e.csv") == [None, None, None]


@pytest.mark.parametrize(
    "text", ["2024-01-01 01:02:32+2500", "2024-01-01T01:02:32 -1500", "2024-01-01 01:02:32+0575"]
)
def test_an_offset_no_zone_has_is_quarantined_not_read_as_25_hours(tmp_path, text):
    """DuckDB reads `+2500` as 25 hours: the row was stored a day off without a word."""
    assert csv_ts(tmp_path, text) is None


def test_a_time_without_a_zone_is_the_sources_local_time(tmp_path):
    """A German shop's export writes its clock without a zone: 01:02 in Berlin is 00:02 UTC in winter and
    23:02 the day before in summer (stored as if UTC, it was one or two hours off)."""
    (tmp_path / "e.csv").write_text("ts\n2024-01-01 01:02:32\n2024-07-01T01:02:32\n2024-01-01\n")
    assert mapped_ts(tmp_path, "e.csv", timezone="Europe/Berlin") == [
        datetime(2024, 1, 1, 0, 2, 32),
        datetime(2024, 6, 30, 23, 2, 32),
        datetime(2023, 12, 31, 23, 0),  # a date is the local midnight
    ]


def test_a_local_time_the_clock_change_skips_is_an_hour_later_and_one_it_repeats_is_the_later(tmp_path):
    (tmp_path / "e.csv").write_text("ts\n2024-03-31 02:30:00\n2024-10-27 02:30:00\n")
    assert mapped_ts(tmp_path, "e.csv", timezone="Europe/Berlin") == [
        datetime(2024, 3, 31, 1, 30),  # 03:30 CEST
        datetime(2024, 10, 27, 1, 30),  # 02:30 CET, the second 02:30 of the night
    ]


def test_a_source_zone_leaves_times_with_a_zone_and_epochs_as_they_are(tmp_path):
    (tmp_path / "e.csv").write_text("ts\n2024-01-01T01:02:32+02:00\n2024-01-01T01:02:32Z\n1704070952\n")
    assert mapped_ts(tmp_path, "e.csv", timezone="America/New_York") == [
        datetime(2023, 12, 31, 23, 2, 32),
        datetime(2024, 1, 1, 1, 2, 32),
        datetime(2024, 1, 1, 1, 2, 32),
    ]


def test_parquet_naive_timestamps_and_dates_are_the_sources_local_time(tmp_path):
    write_parquets(
        tmp_path,
        {
            "naive.parquet": "select timestamp '2024-07-01 01:02:32' as ts",
            "zoned.parquet": "select timestamptz '2024-01-01 01:02:32+02:00' as ts",
            "date.parquet": "select date '2024-01-01' as ts",
        },
    )
    assert mapped_ts(tmp_path, "naive.parquet", timezone="America/New_York") == [
        datetime(2024, 7, 1, 5, 2, 32)
    ]
    assert mapped_ts(tmp_path, "zoned.parquet", timezone="America/New_York") == [
        datetime(2023, 12, 31, 23, 2, 32)
    ]
    assert mapped_ts(tmp_path, "date.parquet", timezone="America/New_York") == [datetime(2024, 1, 1, 5)]


def mapped_zones(tmp_path: Path, zones: list[str]) -> list[tuple[str | None, str | None]]:
    """(the stored time zone, the quarantine reason) of an event per zone text, as the ingest maps them."""
    path = tmp_path / "z.csv"
    path.write_text("ts,zone\n" + "".join(f"2024-01-01T01:02:32Z,{zone}\n" for zone in zones))
    columns = {"user_id": "'u1'", "item_id": "'i1'", "event_type": "'view'", "ts": "ts", "timezone": "zone"}
    feed = Feed(kind="events", path=str(path), columns=columns)
    file = SourceFile(source="s", feed=feed, path=path, format="csv")
    con = duckdb.connect(":memory:")
    try:
        create_warehouse_tables(con)
        outcome = FileOutcome(source="s", file=str(path), kind="events", sha256="x", batch_id="b")
        outcome = prepare_file(con, outcome, file, DEFAULT_EVENT_TYPES, max_bad_fraction=1.0)
        return con.execute(
            "select mapped.timezone, rejected.reason from stg_events_mapped as mapped "
            "left join stg_events_rejected as rejected using (_row) order by _row"
        ).fetchall()
    finally:
        con.close()


def test_an_events_own_time_zone_is_stored_as_a_name_or_an_offset(tmp_path):
    """Segment's context.timezone names the zone, GA4's device.time_zone_offset_seconds gives seconds east of
    UTC; the user's clock at the event, whatever spelling the source uses."""
    zones = [
        "Europe/Berlin",
        "europe/berlin",
        "+05:30",
        "-0500",
        "UTC+2",
        "GMT-03",
        "Z",
        "7200",
        "-18000",
        "-3600",
        "UTC",
        "",
    ]
    assert mapped_zones(tmp_path, zones) == [
        ("Europe/Berlin", None),
        ("Europe/Berlin", None),
        ("+05:30", None),
        ("-05:00", None),
        ("+02:00", None),
        ("-03:00", None),
        ("+00:00", None),
        ("+02:00", None),
        ("-05:00", None),
        ("-01:00", None),  # seconds: no zone is 36 hours off
        ("UTC", None),
        (None, None),  # no zone: the run's clock measures the event
    ]


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "+25:00", "+02:75", "90000", "CEST", "localtime", "1.5", "60", "15", "+02:07"]
)
def test_a_time_zone_that_is_none_is_quarantined_with_its_text(tmp_path, zone):
    assert mapped_zones(tmp_path, [zone]) == [
        (None, f"timezone: not a time zone name or UTC offset ('{zone}')")
    ]


@pytest.mark.parametrize(
    ("ts", "stored"),
    [
        ("epoch_ms(t_ms)", datetime(2024, 6, 30, 23, 2, 32)),  # an epoch: absolute, whatever the zone
        ("make_timestamp(t_ms * 1000)", datetime(2024, 6, 30, 23, 2, 32)),
        ("epoch_ms(t_ms) + interval 1 hour", datetime(2024, 7, 1, 0, 2, 32)),
        ("to_timestamp(t_ms / 1000)", datetime(2024, 6, 30, 23, 2, 32)),
        ("make_timestamp(2024, 7, 1, 1, 2, 32)", datetime(2024, 6, 30, 23, 2, 32)),  # a wall-clock time
        ("strptime(wall, '%d/%m/%Y %H:%M:%S')", datetime(2024, 6, 30, 23, 2, 32)),
    ],
)
def test_a_time_made_from_an_epoch_is_absolute_and_one_made_from_a_wall_clock_is_local(tmp_path, ts, stored):
    """Helper 35: `epoch_ms(t_ms)` gives a TIMESTAMP that means UTC; read as Berlin's wall clock, it was stored
    two hours early as soon as the spec named its zone."""
    (tmp_path / "e.csv").write_text("t_ms,wall\n1719788552000,01/07/2024 01:02:32\n")
    assert mapped_ts(tmp_path, "e.csv", ts=ts, timezone="Europe/Berlin") == [stored]
