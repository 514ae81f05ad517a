"""Listeners with a play or two, as a user of segflow meets them: `segflow run` on listeners as on Last.fm,
then a delivery of cold users. Each is placed by taste (rock ones in rock segments), the published tables and
the snapshot say so (`placed_by`), and `segflow score` and `segflow user` tell why."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import cold_plays, listeners, query

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
COLUMNS = ("user_id", "item_id", "event_type", "ts", "value")
COLD = {"one_rock": ["rock03"], "two_rock": ["rock07", "rock12"], "one_pop": ["pop05"]}


def write_plays(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({**row, "ts": row["ts"].isoformat(sep=" ")} for row in rows)
    spec = path.with_suffix(".toml")
    mapping = "".join(f'{column} = "{column}"\n' for column in COLUMNS)
    spec.write_text(f'name = "listeners"\n[events]\npath = "{path.name}"\n[events.columns]\n{mapping}')
    return spec


def lines(output: str) -> list[str]:
    return [line for line in " ".join(output.split("\n")).split("note: ") if line.strip()]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("listeners")
    workspace = folder / "workspace"
    run = runner.invoke(
        app,
        ["run", "--source", str(write_plays(folder / "plays.csv", listeners())), "--k", "4", "--micro-k", "4",
         "--embedding", "combined", "--workspace", str(workspace)],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    spec = write_plays(
        folder / "cold.csv", [row for user, items in COLD.items() for row in cold_plays(user, items)]
    )
    assert runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)]).exit_code == 0
    live = runner.invoke(app, ["user", "one_pop", "--workspace", str(workspace), "-n", "3"])
    score = runner.invoke(app, ["score", "--source", str(spec), "--workspace", str(workspace)])
    assert score.exit_code == 0, score.output
    user = runner.invoke(app, ["user", "two_rock", "--workspace", str(workspace), "-n", "3"])
    return {"workspace": workspace, "run": run.output, "live": live, "score": score.output, "user": user}


def mostly(workspace: Path, parity: int) -> set[int]:
    """The segments whose published listeners are mostly rock (parity 0) or pop (1) ones."""
    rows = query(
        workspace,
        f"""
        select segment_id from user_segments where user_id like 'u%'
        group by segment_id having avg(case when cast(user_id[2:] as int) % 2 = {parity} then 1 else 0 end) > 0.5
        """,
    )
    return {segment for (segment,) in rows}


def test_the_runs_own_listeners_are_placed_by_the_nearest_centre_and_the_run_keeps_its_reach(scored):
    workspace = scored["workspace"]
    placed = query(
        workspace, "select placed_by, count(*) from user_segments where user_id like 'u%' group by 1"
    )
    assert placed == [("centre", 240)]
    [(reach, largest)] = query(
        workspace,
        """
        select cast(metrics->>'reach' as double), (select max(distance) from user_segments where user_id like 'u%'),
        from segment_runs where is_current
        """,
    )
    assert largest <= reach
    assert "beyond the segments' reach" not in scored["run"]


def test_cold_listeners_are_published_in_the_segments_of_their_taste(scored):
    workspace = scored["workspace"]
    rock, pop = mostly(workspace, 0), mostly(workspace, 1)
    published = dict(
        (user, (segment, placed_by))
        for user, segment, placed_by in query(
            workspace, "select user_id, segment_id, placed_by from user_segments where user_id not like 'u%'"
        )
    )
    assert {user: placed_by for user, (_, placed_by) in published.items()} == dict.fromkeys(COLD, "taste")
    assert published["one_rock"][0] in rock and published["two_rock"][0] in rock
    assert published["one_pop"][0] in pop
    exported = duckdb.sql(
        f"select user_id, segment_id, placed_by from '{workspace / 'exports/current/user_segments.parquet'}' "
        "where user_id not like 'u%'"
    ).fetchall()
    assert {user: (segment, placed_by) for user, segment, placed_by in exported} == published


def test_score_and_user_say_how_a_cold_listener_was_placed(scored):
    assert (
        "3 of them lie beyond the segments' reach: 3 placed by taste (user_segments.placed_by = 'taste')"
    ) in " ".join(scored["score"].split())
    [(distance,)] = query(
        scored["workspace"], "select distance from user_segments where user_id = 'two_rock'"
    )
    user = " ".join(scored["user"].output.split())
    assert (
        "note: placed by taste: their history (few events, or unlike any the segments were fitted on) puts them "
        f"beyond the segments' reach (distance {distance:.2f} from this segment's centre), so they are in the "
        "segment whose users' items are nearest to theirs; its other traits (activity, time of day) may not be "
        "theirs"
    ) in user
    live = " ".join(scored["live"].output.split())
    assert scored["live"].exit_code == 0, scored["live"].output
    assert "note: placed by taste: their history (few events, or unlike any" in live
    assert "note: assigned now by the saved segmenter" in live


def test_mlflow_names_the_clock_a_run_without_a_zone_measured_by(scored):
    """The listeners' spec names no zone and the run no --timezone: the param read `None` (stop 32)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{scored['workspace'] / 'mlflow.db'}")
    (parent,) = [
        run
        for run in client.search_runs([client.get_experiment_by_name("segflow").experiment_id])
        if "mlflow.parentRunId" not in run.data.tags
    ]
    assert parent.data.params["segments.timezone"] == "UTC (none named)"
