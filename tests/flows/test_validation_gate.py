"""The validation gate inside `ingest-events`, and `segflow validate`."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_events
from tasks.ingest.files import IngestFailedError
from tests.helpers import query

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()

SPEC = """name = "ratings"
[events]
path = "{file}"
[events.columns]
user_id = "user"
item_id = "movie"
event_type = "kind"
ts = "day"
value = "stars"
[validation.value_ranges]
rate = [0.5, 5.0]
"""


def write(folder: Path, name: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("user,movie,kind,day,stars\n" + "".join(rows))
    spec = folder / f"{name}.toml"
    spec.write_text(SPEC.format(file=name))
    return spec


def test_a_critical_failure_stops_the_batch_before_anything_is_written(tmp_path, workspace):
    good = [f"u{i},m{i % 9},rate,2024-01-0{1 + i % 9},{1 + i % 5}\n" for i in range(99)]
    ingest_events(source=str(write(tmp_path, "first.csv", good)), workspace=str(workspace))
    before = query(workspace, "select * from events order by all")

    spec = write(
        tmp_path, "second.csv", [*(r.replace("u", "v") for r in good[:50]), "u7,m1,rate,2024-02-01,7\n"]
    )
    with pytest.raises(IngestFailedError) as raised:
        ingest_events(source=str(spec), workspace=str(workspace))
    message = str(raised.value)
    assert "events_batch validation failed for batch" in message
    assert "value of 'rate' events within [0.5, 5]: 1 of 51 rows unexpected, e.g. 7.0" in message
    assert query(workspace, "select * from events order by all") == before
    assert query(workspace, "select count(*) from quarantine") == [(0,)]
    assert query(workspace, "select status from ingest_manifest order by ingested_at") == [
        ("ingested",),
        ("failed_validation",),
    ]
    runs = query(workspace, 'select suite, success, n_failed, report_path from validation_runs order by "at"')
    assert [(s, ok, n) for s, ok, n, _ in runs] == [("events_batch", True, 0), ("events_batch", False, 1)]
    report = Path(runs[-1][3]).read_text()
    assert "value of &#x27;rate&#x27; events within [0.5, 5]" in report and "FAILED" in report
    # The report and the index name the file, not only its batch id.
    assert f"<code>{spec.parent / 'second.csv'}</code>" in report
    index = (workspace / "reports" / "validation" / "index.html").read_text()
    assert "<code>second.csv</code>" in index and "<code>first.csv</code>" in index


def test_a_warning_is_recorded_and_shown_and_the_batch_goes_in(tmp_path, workspace):
    day1 = [f"u{i},m1,{'view' if i < 18 else 'purchase'},2024-01-02,\n" for i in range(20)]
    ingest_events(source=str(write(tmp_path, "day1.csv", day1)), workspace=str(workspace))
    day2 = [
        f"u{i},m1,{'view' if i < 2 else 'purchase'},2024-01-03,\n" for i in range(20)
    ]  # the views vanished
    result = runner.invoke(
        app, ["ingest", "--source", str(write(tmp_path, "day2.csv", day2)), "--workspace", str(workspace)]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (
        "warning day2.csv: event_type mix within 25 points of earlier batches of these event types: "
        "2 of 2 event types unexpected" in output
    )
    assert query(workspace, "select count(*) from events") == [(40,)]
    assert query(workspace, 'select n_warnings from validation_runs order by "at"') == [(0,), (1,)]


def test_a_file_of_another_kind_of_event_is_not_a_shifted_mix(tmp_path, workspace):
    # MovieLens and Last.fm deliver one file per kind of event (ratings, tags; plays, tags): each file's mix
    # is compared only with the batches that share an event type with it.
    views = [f"u{i},m1,view,2024-01-02,\n" for i in range(20)]
    ingest_events(source=str(write(tmp_path, "views.csv", views)), workspace=str(workspace))
    rates = [f"u{i},m1,rate,2024-01-03,4\n" for i in range(20)]
    result = runner.invoke(
        app, ["ingest", "--source", str(write(tmp_path, "rates.csv", rates)), "--workspace", str(workspace)]
    )
    assert result.exit_code == 0, result.output
    assert "event_type mix" not in result.output
    assert query(workspace, 'select n_warnings from validation_runs order by "at"') == [(0,), (0,)]


def test_segflow_validate_reruns_the_suites_and_exits_non_zero_on_a_critical_failure(tmp_path, workspace):
    ingest_events(
        source=str(write(tmp_path, "ok.csv", ["u1,m1,rate,2024-01-02,4\n"])), workspace=str(workspace)
    )
    result = runner.invoke(app, ["validate", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "events_batch" in result.output and "items" in result.output and "passed" in result.output
    # Each source's events are checked apart, and each row says which source (two printed the same rows).
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines() if "│" in line]
    assert {row[1] for row in rows if row[0] == "events_batch"} == {"ratings"}

    con = duckdb.connect(str(workspace / "warehouse.duckdb"))
    con.execute("insert into items values ('m1', 'x', null, -3, null, now())")
    con.close()
    result = runner.invoke(app, ["validate", "--workspace", str(workspace)])
    assert result.exit_code == 1
    assert "price >= 0" in result.output and "FAILED" in result.output
    # Every failure ends in one error line saying what failed (helper 36: it ended with the report paths).
    assert " ".join(result.output.split()).endswith(
        "error: 1 critical check failed (items: price >= 0 when present): the table above says what was seen, "
        "the reports why"
    )


def test_segflow_validate_checks_each_source_with_its_own_settings(tmp_path, workspace):
    ingest_events(
        source=str(write(tmp_path, "ok.csv", ["u1,m1,rate,2024-01-02,4\n"])), workspace=str(workspace)
    )
    assert query(
        workspace, "select name, event_types[1], validation->>'$.value_ranges.rate' from sources"
    ) == [("ratings", "view", "[0.5,5.0]")]
    con = duckdb.connect(str(workspace / "warehouse.duckdb"))
    con.execute("update events set value = 9 where user_id = 'u1'")  # a bad value that slipped in by hand
    con.close()
    result = runner.invoke(app, ["validate", "--workspace", str(workspace)])
    assert result.exit_code == 1
    report = sorted((workspace / "reports" / "validation").glob("*events_batch-warehouse-ratings-*.html"))[
        -1
    ].read_text()
    assert (
        "value of &#x27;rate&#x27; events within [0.5, 5]" in report
        and "1 of 1 rows unexpected, e.g. 9.0" in report
    )
