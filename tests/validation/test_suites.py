"""Each expectation of the suites on a crafted batch that breaks it, and on one that passes."""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb
import pytest

from tasks.warehouse import create_warehouse_tables
from validation.events_batch import events_batch_suite
from validation.gate import ValidationSettings, run_suite
from validation.items import items_suite
from validation.report import write_report

TYPES = ("view", "purchase", "rate")
GOOD = [
    ("u1", "i1", "view", datetime(2024, 1, 1), None, "e1"),
    ("u1", "i2", "purchase", datetime(2024, 1, 2), 12.5, "e2"),
    ("u2", "i1", "rate", datetime(2024, 1, 3), 4.0, "e3"),
    ("u3", "i3", "view", datetime(2024, 1, 4), None, "e4"),
]


@pytest.fixture
def con():
    con = duckdb.connect(":memory:")
    create_warehouse_tables(con)
    con.execute(
        "create table batch (user_id varchar, item_id varchar, event_type varchar, ts timestamp, value double, "
        "event_id varchar, item_title varchar, item_category varchar)"
    )
    yield con
    con.close()


def validate(con, rows, settings=None, with_catalogue=False, stored=()):
    if rows:
        con.executemany(
            "insert into batch (user_id, item_id, event_type, ts, value, event_id) values (?, ?, ?, ?, ?, ?)",
            rows,
        )
    if with_catalogue:
        con.execute("insert into items select 'i' || i, null, null, null, null, now() from range(1, 4) t(i)")
    for event_type in stored:
        con.execute(
            f"insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) values ('s', 'i1', '{event_type}', '2024-01-01', 's', 'b', now())"
        )
    settings = settings or ValidationSettings(value_ranges={"rate": (0.5, 5.0)})
    result = run_suite(con, events_batch_suite(con, "batch", TYPES, settings), "b1", settings)
    return result, {c.name: c for c in result.checks}


def test_a_good_batch_passes_every_expectation(con):
    result, checks = validate(con, GOOD, with_catalogue=True, stored=("view", "purchase", "rate", "view"))
    assert result.success and not result.warnings
    assert set(checks) == {
        "not_null:user_id", "not_null:item_id", "not_null:event_type", "not_null:ts", "event_type_in_set",
        "ts_in_range", "at_least_one_row", "value_range:rate", "event_id_unique", "items_in_catalogue", "event_type_mix",
    }  # fmt: skip
    assert checks["event_type_in_set"].observed == "0 of 4 rows unexpected"


@pytest.mark.parametrize(
    ("bad_row", "check", "observed"),
    [
        (
            (None, "i1", "view", datetime(2024, 1, 5), None, "e9"),
            "not_null:user_id",
            "1 of 5 rows unexpected",
        ),
        (
            ("u9", None, "view", datetime(2024, 1, 5), None, "e9"),
            "not_null:item_id",
            "1 of 5 rows unexpected",
        ),
        (
            ("u9", "i1", "teleport", datetime(2024, 1, 5), None, "e9"),
            "event_type_in_set",
            "1 of 5 rows unexpected, e.g. 'teleport'",
        ),
        (("u9", "i1", "view", datetime(1985, 1, 5), None, "e9"), "ts_in_range", "1 of 5 rows unexpected"),
        (
            ("u9", "i1", "rate", datetime(2024, 1, 5), 7.0, "e9"),
            "value_range:rate",
            "1 of 2 rows unexpected, e.g. 7.0",
        ),
        (
            ("u9", "i1", "view", datetime(2024, 1, 5), None, "e1"),
            "event_id_unique",
            "2 of 5 rows unexpected, e.g. 'e1'",
        ),
    ],
)
def test_each_critical_expectation_fails_on_a_batch_that_breaks_it(con, bad_row, check, observed):
    result, checks = validate(con, [*GOOD, bad_row])
    assert [c.name for c in result.failures] == [check]
    assert checks[check].observed.startswith(observed)
    assert f"{checks[check].description}: {observed}" in result.describe_failures()


def test_an_empty_batch_fails_at_least_one_row(con):
    result, _ = validate(con, [])
    assert [c.name for c in result.failures] == ["at_least_one_row"]


def test_too_many_events_on_items_missing_from_the_catalogue_fail(con):
    rows = [*GOOD, ("u9", "i404", "view", datetime(2024, 1, 5), None, "e9")]
    result, checks = validate(con, rows, with_catalogue=True)
    assert [c.name for c in result.failures] == ["items_in_catalogue"]
    assert checks["items_in_catalogue"].observed == "1 of 5 rows unexpected, e.g. 'i404'"
    lenient = ValidationSettings(max_missing_item_share=0.25)
    con.execute("delete from batch")
    result, _ = validate(con, rows, settings=lenient)  # the catalogue is already there
    assert result.success
    # 1.0: any share may be missing (a file of new users whose items the catalogue lacks yet); it failed
    # "at most 100% missing: 1 of 5 rows unexpected".
    con.execute("delete from batch")
    result, _ = validate(con, rows, settings=ValidationSettings(max_missing_item_share=1.0))
    assert result.success


def test_an_unexpected_value_is_given_once_as_an_example(con):
    # Last.fm: 1,538 tag events on 390 uncatalogued artists read "e.g. '8391', '8391', '10951'".
    rows = [
        *GOOD,
        *(
            (f"u{i}", "i404" if i < 3 else "i405", "view", datetime(2024, 1, 5), None, f"m{i}")
            for i in range(4)
        ),
    ]
    lenient = ValidationSettings(max_missing_item_share=0.9)
    _, checks = validate(con, rows, settings=lenient, with_catalogue=True)
    assert checks["items_in_catalogue"].observed == "4 of 8 rows unexpected, e.g. 'i404', 'i405'"


def test_items_the_batch_names_itself_count_as_catalogued(con):
    # A shop feed names its items only in its rows (item_title / item_category): new items are not missing.
    rows = [*GOOD, *((f"u{i}", f"new{i}", "view", datetime(2024, 1, 5), None, f"n{i}") for i in range(6))]
    con.executemany(
        "insert into batch (user_id, item_id, event_type, ts, value, event_id) values (?, ?, ?, ?, ?, ?)",
        rows,
    )
    con.execute("update batch set item_title = 'A new thing' where item_id in ('new0', 'new1', 'new2')")
    con.execute("update batch set item_category = 'tools' where item_id in ('new3', 'new4')")
    con.execute("insert into items select 'i' || i, null, null, null, null, now() from range(1, 4) t(i)")
    settings = ValidationSettings(max_missing_item_share=0.05)
    result = run_suite(con, events_batch_suite(con, "batch", TYPES, settings), "b1", settings)
    checks = {c.name: c for c in result.checks}
    # Only new5 names itself nowhere: it is the one missing item (1 of 10 rows, over 5%).
    assert checks["items_in_catalogue"].observed == "1 of 10 rows unexpected, e.g. 'new5'"
    con.execute("update batch set item_title = 'Also new' where item_id = 'new5'")
    result = run_suite(con, events_batch_suite(con, "batch", TYPES, settings), "b2", settings)
    assert result.success


def test_great_expectations_is_quiet_unless_verbose(con, caplog):
    from validation import gate

    with caplog.at_level(logging.INFO):
        validate(con, GOOD)
    assert not [r for r in caplog.records if r.name.startswith("great_expectations")]
    caplog.clear()
    try:
        gate.set_verbose(True)
        with caplog.at_level(logging.INFO):
            validate(con, GOOD)
        assert any("ephemeral docs site" in r.getMessage() for r in caplog.records)
    finally:
        gate.set_verbose(None)


def test_segflow_verbose_in_the_environment_turns_library_logs_on(monkeypatch):
    from validation import gate

    monkeypatch.setenv("SEGFLOW_VERBOSE", "1")
    assert gate.is_verbose()
    monkeypatch.setenv("SEGFLOW_VERBOSE", "0")
    assert not gate.is_verbose()
    gate.set_verbose(True)
    try:
        assert gate.is_verbose()
    finally:
        gate.set_verbose(None)


def test_a_shifted_event_type_mix_is_a_warning_not_a_failure(con):
    result, checks = validate(con, GOOD, stored=("purchase",) * 9 + ("view",))
    assert result.success
    assert [c.name for c in result.warnings] == ["event_type_mix"]
    # view moved by 0.4 too, but 4 events with a 0.1 share of views give 0.4 by chance (3 SE = 0.45).
    assert (
        checks["event_type_mix"].observed == "1 of 3 event types unexpected, e.g. 0.65 (event_type=purchase)"
    )


def test_a_mix_change_chance_explains_for_the_batchs_size_is_not_a_warning(con):
    """An hour of 4 events (2 views where views were 82%) warned, and as critical would have been refused
    (helper 22); the same shares in 100 times as many events are a shift."""
    stored = ("view",) * 82 + ("purchase",) * 18
    hour = [("u1", "i1", "view", datetime(2024, 1, 1), None, None), ("u2", "i1", "view", datetime(2024, 1, 1), None, None),
            ("u3", "i1", "purchase", datetime(2024, 1, 1), 5.0, None), ("u4", "i1", "purchase", datetime(2024, 1, 1), 5.0, None)]  # fmt: skip
    result, _ = validate(con, hour, stored=stored)
    assert result.success and not result.warnings
    con.execute("delete from batch")
    con.execute("delete from events")
    result, checks = validate(con, hour * 100, stored=stored)
    assert [c.name for c in result.warnings] == ["event_type_mix"]
    assert checks["event_type_mix"].observed.startswith("2 of 2 event types unexpected, e.g. 0.32 ")


def test_severity_is_configurable(con):
    settings = ValidationSettings(severity={"event_type_in_set": "warning"})
    result, _ = validate(
        con, [*GOOD, ("u9", "i1", "teleport", datetime(2024, 1, 5), None, "e9")], settings=settings
    )
    assert result.success and [c.name for c in result.warnings] == ["event_type_in_set"]


def test_chunks_add_up_exactly_and_keep_uniqueness_across_chunks(con):
    rows = [
        (f"u{i}", "i1", "view" if i % 10 else "teleport", datetime(2024, 1, 1), None, f"e{i}")
        for i in range(1000)
    ]
    rows.append(("u0", "i1", "view", datetime(2024, 1, 2), None, "e500"))
    settings = ValidationSettings(chunk_rows=100)
    result, checks = validate(con, rows, settings=settings)
    assert checks["event_type_in_set"].observed.startswith("100 of 1,001 rows unexpected, e.g. 'teleport'")
    assert checks["event_id_unique"].observed.startswith("2 of 1,001 rows unexpected, e.g. 'e500'")
    assert checks["at_least_one_row"].observed == "1,001 rows"


def test_items_suite(con):
    con.execute(
        "insert into items values ('a', null, null, 3.0, null, now()), ('b', null, null, -1.0, null, now())"
    )
    result = run_suite(con, items_suite("items"), "b", ValidationSettings())
    assert [c.name for c in result.failures] == ["price_not_negative"]
    assert result.failures[0].observed == "1 of 2 rows unexpected, e.g. -1.0 (item_id=b)"


def test_the_report_is_self_contained_names_the_failure_and_is_indexed(con, tmp_path):
    result, _ = validate(con, [*GOOD, ("u9", "i1", "teleport", datetime(2024, 1, 5), None, "e9")])
    html_path = write_report(result, tmp_path)
    html = html_path.read_text()
    assert (
        "event_type in set" in html
        and "FAILED" in html
        and "1 of 5 rows unexpected, e.g. &#x27;teleport&#x27;" in html
    )
    assert "http://" not in html and "https://" not in html and "<link" not in html and "<script" not in html
    assert html_path.with_suffix(".json").exists()
    second, _ = validate(con, [])
    write_report(second, tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert index.index(second.report_path.split("/")[-1]) < index.index(html_path.name)


def test_every_check_a_spec_can_name_is_known_and_a_misspelt_one_is_refused(con):
    """`event_mix = "critical"` (the check is event_type_mix) left the check a warning without a word, and
    `Purchase = [0, 100000]` checked no event (types are lowercased at ingest) (helper 22)."""
    settings = ValidationSettings(
        value_ranges={" Purchase ": (0.0, 1e5)}, severity={"value_range:Purchase": "warning"}
    )
    assert settings.value_ranges == {"purchase": (0.0, 1e5)} and settings.severity == {
        "value_range:purchase": "warning"
    }
    suites = [events_batch_suite(con, "batch", TYPES, settings), items_suite("items")]
    for check in (check for suite in suites for part in suite.parts for check in part.checks):
        ValidationSettings(severity={check.name: "warning"})  # every name the suites use is accepted
    with pytest.raises(ValueError, match="no check is named 'event_mix'; the checks: at_least_one_row, "):
        ValidationSettings(severity={"event_mix": "critical"})
