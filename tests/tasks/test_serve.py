"""The read side over a published snapshot: the serving SQL's exact rows, the snapshot resolved once, and a
look into the warehouse that never waits for a writer."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from tasks.publish.publish import switch_current_export
from tasks.serve import (
    find_snapshot,
    look_into_warehouse,
    read_item_titles,
    read_profiles,
    read_published_run,
    read_recommendations,
    read_seen_items,
    read_segment_run,
    read_user_segment,
)
from tasks.warehouse import create_warehouse_tables
from tasks.workspace import Workspace, hold_workspace

RUN_ID = "20260101T000000-aaaaaa"
# segment 0's list, segment 1's list, and the global list (-1) that tops them up
RECOMMENDATIONS = [
    (0, 1, "i1", 0.9), (0, 2, "i2", 0.8), (0, 3, "i3", 0.7),
    (1, 1, "i4", 0.9), (1, 2, "i5", 0.6),
    (-1, 1, "i1", 0.5), (-1, 2, "i4", 0.4), (-1, 3, "i6", 0.3), (-1, 4, "i7", 0.2),
]  # fmt: skip
ASSIGNMENTS = [("u1", 0, 0.1), ("u2", 0, 0.2), ("u3", 1, 0.3), ("u4 [b]", 1, 0.4)]
LABEL = "coffee [/] tea"
CATEGORY = "[events]"


def write_exports(exports_dir: Path, run_id: str, label: str = LABEL) -> None:
    """A published run's Parquet files as the publish step writes them, and `current` switched to it."""
    out = exports_dir / run_id
    out.mkdir(parents=True)
    con = duckdb.connect()
    at = datetime(2026, 1, 1, 12, 30)
    con.execute("create table a (user_id varchar, segment_id integer, distance double)")
    con.executemany("insert into a values (?, ?, ?)", ASSIGNMENTS)
    con.execute(
        "copy (select user_id, segment_id, $run_id as run_id, distance, $at as assigned_at from a) to $path",
        {"run_id": run_id, "at": at, "path": str(out / "user_segments.parquet")},
    )
    con.execute("create table r (segment_id integer, rank integer, item_id varchar, score double)")
    con.executemany("insert into r values (?, ?, ?, ?)", RECOMMENDATIONS)
    con.execute(
        "copy (select *, $run_id as run_id from r) to $path",
        {"run_id": run_id, "path": str(out / "segment_recommendations.parquet")},
    )
    con.execute(
        """
        copy (
            select * from (values
                (0, 2, 0.5, $label, [$category, 'tea'], $run_id),
                (1, 2, 0.5, 'light users', ['tea'], $run_id)
            ) as p(segment_id, size, share, label, top_categories, run_id)
        ) to $path
        """,
        {
            "label": label,
            "category": CATEGORY,
            "run_id": run_id,
            "path": str(out / "segment_profiles.parquet"),
        },
    )
    con.close()
    switch_current_export(exports_dir, run_id)


def write_warehouse(path: Path, run_id: str = RUN_ID) -> None:
    """The contract tables, with u1's events (u1 has seen i1 and i2... of which only i1 is on a list) and
    the run in the run log."""
    con = duckdb.connect(str(path))
    create_warehouse_tables(con)
    con.execute(
        """
        insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at)
        values ('u1', 'i1', 'view', '2026-01-01', 's', 'b', now()), ('u1', 'i9', 'view', '2026-01-01', 's', 'b', now())
        """
    )
    con.execute(
        "insert into items (item_id, title, updated_at) values ('i2', 'Second [bold]thing[/]', now()), ('i4', null, now())"
    )
    con.execute(
        "insert into segment_runs values ($run_id, '2026-01-01 12:00', 'shop', 'combined', 'kmeans', 2, '{}', null, true)",
        {"run_id": run_id},
    )
    con.close()


def write_published(workspace: Path, run_id: str = RUN_ID) -> None:
    """A workspace as `segflow run` leaves it: a warehouse and a published snapshot."""
    workspace.mkdir(parents=True)
    write_warehouse(workspace / "warehouse.duckdb", run_id)
    write_exports(workspace / "exports", run_id)


@pytest.fixture
def published(workspace: Path) -> Workspace:
    write_published(workspace)
    return Workspace(workspace=workspace)


def test_nothing_published_is_no_snapshot(tmp_path):
    assert find_snapshot(tmp_path / "exports") is None
    (tmp_path / "exports" / "run-a").mkdir(parents=True)  # an export folder never switched to
    assert find_snapshot(tmp_path / "exports") is None


def test_the_serving_queries_return_the_published_rows(published):
    snapshot = find_snapshot(published.exports_dir)
    assert [(p["segment_id"], p["label"], p["top_categories"]) for p in read_profiles(snapshot)] == [
        (0, LABEL, [CATEGORY, "tea"]),
        (1, "light users", ["tea"]),
    ]
    assert read_published_run(snapshot) == {
        "run_id": RUN_ID, "assigned_at": datetime(2026, 1, 1, 12, 30), "n_users": 4, "k": 2,
    }  # fmt: skip
    assert read_user_segment(snapshot, "u4 [b]") == {"segment_id": 1, "label": "light users", "distance": 0.4}
    assert read_user_segment(snapshot, "nobody") is None


def test_recommendations_leave_out_seen_items_and_top_up_from_the_global_list_once(published):
    snapshot = find_snapshot(published.exports_dir)
    rows = read_recommendations(snapshot, 0, 4, ["i1", "i9"])
    assert [(r["item_id"], r["score"]) for r in rows] == [("i2", 0.8), ("i3", 0.7), ("i4", 0.4), ("i6", 0.3)]
    # Unknown seen items: the segment's list as published; i1 is not listed twice.
    assert [r["item_id"] for r in read_recommendations(snapshot, 0, 5)] == ["i1", "i2", "i3", "i4", "i6"]


def test_a_switch_of_current_after_resolving_does_not_mix_runs(published):
    snapshot = find_snapshot(published.exports_dir)
    write_exports(published.exports_dir, "20260102T000000-bbbbbb", label="the new run")
    assert read_profiles(snapshot)[0]["label"] == LABEL
    assert read_published_run(snapshot)["run_id"] == RUN_ID
    assert read_profiles(find_snapshot(published.exports_dir))[0]["label"] == "the new run"


def test_a_free_warehouse_gives_seen_items_titles_and_the_run(published):
    with look_into_warehouse(published) as look:
        assert look.unavailable is None
        assert sorted(read_seen_items(look, "u1")) == ["i1", "i9"]
        assert read_item_titles(look, ["i2", "i4", "i5"]) == {"i2": "Second [bold]thing[/]", "i4": None}
        run = read_segment_run(look, RUN_ID)
    assert (run["source"], run["embedding"], run["clusterer"], run["k"]) == ("shop", "combined", "kmeans", 2)


def test_a_warehouse_held_for_writing_is_not_waited_for(published):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; con = duckdb.connect({str(published.warehouse_path)!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        with look_into_warehouse(published) as look:
            assert look.con is None
            assert look.unavailable == f"process {holder.pid} has the warehouse open for writing"
            assert read_seen_items(look, "u1") is None
            assert read_item_titles(look, ["i2"]) == {}
            assert read_segment_run(look, RUN_ID) is None
    finally:
        holder.kill()
        holder.wait()


def test_a_segflow_writer_keeps_readers_out_of_the_warehouse_between_its_connections(published):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from tasks.workspace import open_workspace, hold_workspace\n"
         f"with hold_workspace(open_workspace({str(published.root)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with look_into_warehouse(published) as look:
            assert look.unavailable == f"segflow process {holder.pid} is writing the warehouse"
    finally:
        holder.kill()
        holder.wait()
    with look_into_warehouse(published) as look:  # a writer killed by SIGKILL leaves its pid: not a writer
        assert look.unavailable is None


def test_the_writer_itself_may_look(published):
    with hold_workspace(published), look_into_warehouse(published) as look:
        assert look.unavailable is None
