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
    describe_memberships,
    find_snapshot,
    look_into_warehouse,
    read_export_run,
    read_export_titles,
    read_item_titles,
    read_profiles,
    read_published_run,
    read_recommendations,
    read_run_labels,
    read_seen_items,
    read_segment_run,
    read_user_events,
    read_user_list,
    read_user_memberships,
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


# The micro level: u1 is in micro-segments 0 (0.75) and 1 (0.25); their lists, u1's ready list, the titles.
MEMBERSHIPS = [("u1", 0, 0.75), ("u1", 1, 0.25), ("u3", 1, 1.0)]
MICRO_SEGMENTS = [(0, 2, 0, ["tea"]), (1, 2, 1, ["[events]", "tea"])]
MICRO_RECOMMENDATIONS = [(0, 1, "i2", 0.8), (0, 2, "i5", 0.4), (1, 1, "i5", 1.0), (1, 2, "i3", 0.2)]
USER_LIST = [("u1", 1, "i5", 0.55), ("u1", 2, "i2", 0.5), ("u1", 3, "i6", 0.0)]
TITLES = [("i2", "Second thing"), ("i5", "Fifth [b]"), ("i6", None)]


def write_micro_exports(folder: Path, run_id: str) -> None:
    """What a run since the micro level adds to its export folder: memberships, micro-segments and their
    lists, the users' ready lists, the listed items' titles and the run's own row."""
    con = duckdb.connect()
    tables = {
        "user_memberships": ("user_id varchar, micro_segment_id integer, weight double", MEMBERSHIPS),
        "micro_segments": ("micro_segment_id integer, size bigint, segment_id integer, top_categories varchar[]", MICRO_SEGMENTS),
        "micro_segment_recommendations": ("micro_segment_id integer, rank integer, item_id varchar, score double", MICRO_RECOMMENDATIONS),
        "user_recommendations": ("user_id varchar, rank bigint, item_id varchar, score double", USER_LIST),
    }  # fmt: skip
    for table, (columns, rows) in tables.items():
        con.execute(f"create table {table} ({columns})")
        con.executemany(f"insert into {table} values ({', '.join('?' * len(rows[0]))})", rows)
        con.execute(
            f"copy (select *, $run_id as run_id from {table}) to $path",
            {"run_id": run_id, "path": str(folder / f"{table}.parquet")},
        )
    con.execute("create table titles (item_id varchar, title varchar)")
    con.executemany("insert into titles values (?, ?)", TITLES)
    con.execute("copy titles to $path", {"path": str(folder / "item_titles.parquet")})
    con.execute(
        "copy (select $run_id as run_id, timestamp '2026-01-01 12:00' as created_at, 'shop' as source, "
        "'combined' as embedding, 'kmeans' as clusterer, 2 as k, '{}'::json as metrics, null as mlflow_run_id, "
        "true as is_current) to $path",
        {"run_id": run_id, "path": str(folder / "segment_runs.parquet")},
    )
    con.close()


def write_exports(exports_dir: Path, run_id: str, label: str = LABEL, micro: bool = False) -> None:
    """A published run's Parquet files as the publish step writes them (with `micro`, as it writes them since
    the micro level), and `current` switched to it."""
    out = exports_dir / run_id
    out.mkdir(parents=True)
    if micro:
        write_micro_exports(out, run_id)
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


def write_published(workspace: Path, run_id: str = RUN_ID, micro: bool = False) -> None:
    """A workspace as `segflow run` leaves it: a warehouse and a published snapshot."""
    workspace.mkdir(parents=True)
    write_warehouse(workspace / "warehouse.duckdb", run_id)
    write_exports(workspace / "exports", run_id, micro=micro)


@pytest.fixture
def published(workspace: Path) -> Workspace:
    write_published(workspace)
    return Workspace(workspace=workspace)


def test_nothing_published_is_no_snapshot(tmp_path):
    assert find_snapshot(tmp_path / "exports") is None
    (tmp_path / "exports" / "run-a").mkdir(parents=True)  # an export folder never switched to
    assert find_snapshot(tmp_path / "exports") is None


def test_a_runs_labels_outlive_its_pruned_folder_through_a_kept_scoring_of_it(published):
    """`segflow history` labels each spell by its run. Scoring keeps the run's id on its spells but exports to
    `<run_id>-scored-...`; five scorings later the run's own folder is pruned (reviewer)."""
    exports = published.exports_dir
    assert read_run_labels(exports, RUN_ID) == {0: LABEL, 1: "light users"}
    (exports / RUN_ID).rename(exports / f"{RUN_ID}-scored-20260102T000000-abc123")  # the original pruned
    assert read_run_labels(exports, RUN_ID) == {0: LABEL, 1: "light users"}
    assert read_run_labels(exports, "another-run") == {}


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


@pytest.fixture
def published_micro(workspace: Path) -> Workspace:
    write_published(workspace, micro=True)
    return Workspace(workspace=workspace)


def test_an_older_snapshot_has_no_micro_level_titles_or_run(published):
    snapshot = find_snapshot(published.exports_dir)
    assert read_user_memberships(snapshot, "u1") is None
    assert read_user_list(snapshot, "u1", 5) is None
    assert read_export_titles(snapshot, ["i2"]) is None
    assert read_export_run(snapshot) is None


def test_the_micro_level_titles_and_run_come_from_the_snapshot_alone(published_micro):
    snapshot = find_snapshot(published_micro.exports_dir)
    memberships = read_user_memberships(snapshot, "u1")
    assert memberships == [(0, 0.75), (1, 0.25)]
    assert describe_memberships(snapshot, memberships) == [
        {"micro_segment_id": 0, "weight": 0.75, "size": 2, "segment_id": 0, "top_categories": ["tea"]},
        {"micro_segment_id": 1, "weight": 0.25, "size": 2, "segment_id": 1, "top_categories": ["[events]", "tea"]},
    ]  # fmt: skip
    assert read_user_list(snapshot, "u1", 2) == [
        {"rank": 1, "item_id": "i5", "score": 0.55}, {"rank": 2, "item_id": "i2", "score": 0.5},
    ]  # fmt: skip
    assert read_user_list(snapshot, "nobody", 2) == []
    assert read_export_titles(snapshot, ["i2", "i6", "i9"]) == {"i2": "Second thing", "i6": None}
    run = read_export_run(snapshot)
    assert (run["run_id"], run["source"], run["embedding"], run["clusterer"], run["k"]) == (
        RUN_ID, "shop", "combined", "kmeans", 2,
    )  # fmt: skip


def test_a_users_events_come_from_a_free_warehouse_in_the_segmenter_columns(published):
    with look_into_warehouse(published) as look:
        events = read_user_events(look, "u1")
        none = read_user_events(look, "nobody")
    assert events.column_names[:4] == ["user_id", "item_id", "event_type", "ts"]
    assert events.column("item_id").to_pylist() == ["i1", "i9"]
    assert none.num_rows == 0
