"""`ingest-events` end to end under Prefect's test harness, and the `segflow` commands around it."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_events
from tests.helpers import ML_LATEST_SMALL, needs_ml_latest_small, query, write_csv_source

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


@needs_ml_latest_small
def test_movielens_latest_small_lands_exactly_and_a_second_ingest_adds_nothing(workspace):
    report = ingest_events(source=f"movielens:{ML_LATEST_SMALL}", workspace=str(workspace))
    assert [(f.kind, f.status, f.rows_read, f.rows_inserted) for f in report.files] == [
        ("items", "ingested", 9_742, 9_742),
        ("events", "ingested", 100_836, 100_836),
        ("events", "ingested", 3_683, 3_683),
    ]
    assert query(
        workspace, "select count(*), count(distinct user_id) from events where event_type = 'rate'"
    ) == [(100_836, 610)]
    assert query(
        workspace, "select min(value), max(value), min(ts)::varchar from events where event_type = 'rate'"
    ) == [(0.5, 5.0, "1996-03-29 18:36:55")]
    assert query(workspace, "select title, category from items where item_id = '1'") == [
        ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy")
    ]
    manifest = query(
        workspace,
        "select count(*) from ingest_manifest where rows_read = rows_inserted + rows_duplicate + rows_quarantined",
    )
    assert manifest == [(3,)]

    again = ingest_events(source=f"movielens:{ML_LATEST_SMALL}", workspace=str(workspace))
    assert [f.status for f in again.files] == ["skipped", "skipped", "skipped"]
    assert query(workspace, "select count(*) from events") == [(104_519,)]
    assert query(workspace, "select count(*) from ingest_manifest") == [(3,)]


def test_segflow_ingest_on_demo_data_prints_what_it_did(workspace, tmp_path):
    result = runner.invoke(app, ["ingest", "--source", "demo:200", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "events.csv" in result.output and "ingested" in result.output
    n_events, n_items = query(workspace, "select count(*), count(distinct item_id) from events")[0]
    assert n_items < 480  # 200 users do not touch every item of the catalogue: both counts are printed
    assert (
        f"{n_events:,} events from 200 users on {n_items} items (the catalogue lists 480); 0 rows in quarantine"
        in (" ".join(result.output.split()))
    )
    again = runner.invoke(app, ["ingest", "--source", "demo:200", "--workspace", str(workspace)])
    assert again.exit_code == 0 and "skipped" in again.output
    assert query(workspace, "select count(*) from events")[0][0] == n_events
    assert "sources" not in again.output
    # Another data set in the same workspace: its users would be segmented with the demo's; the user is told.
    spec = write_csv_source(tmp_path / "shop", [f"s{i},i00001,view,2024-01-01\n" for i in range(3)])
    other = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert other.exit_code == 0, other.output
    assert (
        "note: the warehouse holds the events of 2 sources (demo, shop): segments are built from all of them; "
        "use one workspace per data set to keep them apart"
    ) in " ".join(other.output.split())


def test_a_rejected_file_exits_non_zero_with_the_fraction_and_reasons(tmp_path, workspace):
    spec = write_csv_source(
        tmp_path / "src", [f"u{i},i1,{'view' if i < 8 else 'teleport'},2024-01-01\n" for i in range(10)]
    )
    result = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "e.csv: 2 of 10 rows are bad (20.0% > max-bad-fraction 5.0%)" in output
    assert "event_type: not in the configured set, e.g. 'teleport' (2)" in output
    assert query(workspace, "select count(*) from events") == [(0,)]


def test_a_second_writer_gets_workspace_is_busy(workspace):
    workspace.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tasks.workspace import open_workspace, hold_workspace\n"
         f"ws = open_workspace({str(workspace)!r})\n"
         "with hold_workspace(ws):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, ["ingest", "--source", "demo:50", "--workspace", str(workspace)])
        assert result.exit_code == 1
        assert f"workspace is busy (pid {holder.pid})" in " ".join(result.output.split())
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    result = runner.invoke(app, ["ingest", "--source", "demo:50", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output


def test_every_command_has_help():
    for command in ([], ["ingest"], ["run"], ["demo-data"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_a_spec_that_changes_the_time_zone_of_stored_events_is_refused_and_nothing_moves(tmp_path, workspace):
    """Helper 35: the run's note advised naming the zone; done in an existing workspace, the next day's export
    (overlapping the first) stored its events again an hour from their twins, and the first file's stayed
    as read. The spec is refused instead, and names the ways out."""
    rows = [f"u{u},i{u % 3},view,2024-01-0{d} 10:00:00\n" for u in range(4) for d in (1, 2)]
    spec = write_csv_source(tmp_path / "shop", rows)
    assert runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)]).exit_code == 0
    (tmp_path / "shop" / "e2.csv").write_text(
        "user,item,kind,day\n" + "".join(rows[1::2]) + "u9,i1,view,2024-01-03 10:00:00\n"
    )
    text = spec.read_text().replace('path = "e.csv"', 'path = "*.csv"')
    spec.write_text('timezone = "Europe/Berlin"\n' + text)
    before = query(workspace, "select count(*), min(ts) from events")
    result = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        "error: source 'shop' now names timezone 'Europe/Berlin', but its 8 events in the warehouse were read in "
        "'UTC' (a time without a zone as its wall clock): read again, the same events would be stored hours apart "
        "from them (an overlapping export stored twice), and those stored would stay as read. Keep timezone = "
        "'UTC' in the spec and measure day parts by another clock with `segflow run --timezone Europe/Berlin`, or ingest "
        "the source into a new workspace"
    )
    assert (
        query(workspace, "select count(*), min(ts) from events") == before == [(8, datetime(2024, 1, 1, 10))]
    )
    spec.write_text('timezone = "UTC"\n' + text)  # as stored: the overlap is recognised, the new event lands
    assert runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)]).exit_code == 0
    assert query(workspace, "select count(*), count(distinct user_id) from events") == [(9, 5)]
