"""A source in another time zone, end to end: a Tokyo service's export writes its clock without a zone. The
spec's `timezone` reads those times as Tokyo's (stored in UTC), and the run measures day parts and weekends
by the users' clock: its night listeners are night listeners, not afternoon ones as in UTC. An event that
carries its own zone (the export's `zone` column) is measured by it, whatever the run's."""

from __future__ import annotations

import csv
from datetime import datetime

import pytest

from flows.segment_users import segment_users
from tasks.segment.settings import SegmentSettings
from tests.helpers import listeners, query

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]
COLUMNS = ("user_id", "item_id", "event_type", "ts", "value", "timezone")
# Listeners u000, u001, u004, ... play at 9-15h; u002, u003, u006, ... at 23-02h, by their own clock. The
# export names the zone of one night listener's events only.
DAY, NIGHT, ZONED = "u000", "u002", "u006"
SETTINGS = SegmentSettings(embedding="behaviour", k=4, micro_k=4)


def run(tmp_path, timezone_line: str, settings: SegmentSettings):
    folder = tmp_path / "tokyo"
    folder.mkdir()
    rows = listeners()
    with open(folder / "plays.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(
            {
                **row,
                "ts": row["ts"].isoformat(sep=" "),
                "timezone": "Asia/Tokyo" if row["user_id"] == ZONED else "",
            }
            for row in rows
        )
    mapping = "".join(f'{column} = "{column}"\n' for column in COLUMNS)
    spec = folder / "tokyo.toml"
    spec.write_text(
        f'name = "tokyo"\n{timezone_line}[events]\npath = "plays.csv"\n[events.columns]\n{mapping}'
    )
    workspace = tmp_path / "workspace"
    summary = segment_users(source=str(spec), workspace=str(workspace), settings=settings)
    return rows, workspace, summary


def day_parts(workspace, user: str) -> tuple:
    sql = f"select share_night + share_late, share_afternoon + share_evening from fct_user_time where user_id = '{user}'"
    return query(workspace, sql)[0]


def test_a_sources_time_zone_reads_its_times_and_sets_the_users_clock(tmp_path):
    rows, workspace, summary = run(tmp_path, 'timezone = "Asia/Tokyo"\n', SETTINGS)
    first = min((r for r in rows if r["user_id"] == NIGHT), key=lambda r: r["ts"])
    stored = query(workspace, f"select min(ts) from events where user_id = '{NIGHT}'")[0][0]
    assert (first["ts"], stored) == (datetime(2011, 1, 2, 0), datetime(2011, 1, 1, 15))  # Tokyo is UTC+9
    assert day_parts(workspace, NIGHT) == (1.0, 0.0)  # 23:00-03:00 in Tokyo
    assert day_parts(workspace, DAY) == (0.0, pytest.approx(0.5, abs=0.25))  # 9-15h: mornings and afternoons
    assert not any("UTC clock" in note for note in summary.notes)


def test_the_runs_timezone_overrides_the_sources_and_an_events_own_zone_overrides_both(tmp_path):
    """`segflow run --timezone UTC`: the same times, stored the same, measured by the UTC clock, where Tokyo's
    night listeners play in the afternoons and evenings; but not the one whose events say they are in Tokyo."""
    _, workspace, _ = run(
        tmp_path, 'timezone = "Asia/Tokyo"\n', SETTINGS.model_copy(update={"timezone": "UTC"})
    )
    stored = query(workspace, f"select min(ts) from events where user_id = '{NIGHT}'")[0][0]
    assert stored == datetime(2011, 1, 1, 15)
    assert day_parts(workspace, NIGHT) == (0.0, 1.0)  # 14:00-18:00 UTC
    assert day_parts(workspace, ZONED) == (1.0, 0.0)
    assert query(workspace, f"select distinct timezone from events where user_id = '{ZONED}'") == [
        ("Asia/Tokyo",)
    ]
