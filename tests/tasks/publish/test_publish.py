"""The publish steps on a real warehouse file: an export folder a reader needs nothing else for (the run's
own row, the listed items' titles), and the history of every user's segments written by the swap."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from tasks.publish.publish import (
    drop_staged,
    prune_exports,
    published_folder,
    restore_current_export,
    swap_published,
    switch_current_export,
    write_exports,
)
from tasks.warehouse import connect_warehouse, latest_event_time

FIRST, SECOND = "20260101T000000-aaaaaa", "20260102T000000-bbbbbb"


def stage(con: duckdb.DuckDBPyConnection, run_id: str, segments: dict[str, int], at: datetime) -> None:
    """Staged seg_* tables as a run leaves them before publishing: `segments` is user -> segment."""
    con.execute("create or replace table seg_user_segments as from user_segments limit 0")
    for user, segment in segments.items():
        con.execute(
            "insert into seg_user_segments values (?, ?, ?, 0.5, ?, 'centre')", [user, segment, run_id, at]
        )
    for table in ("segment_profiles", "micro_segments", "user_memberships"):
        con.execute(f"create or replace table seg_{table} as from {table} limit 0")
    con.execute(f"create or replace table seg_segment_recommendations as select 0 as segment_id, 1 as rank, 'i1' as item_id, 0.5 as score, '{run_id}' as run_id")  # fmt: skip
    con.execute(f"create or replace table seg_micro_segment_recommendations as select 0 as micro_segment_id, 1 as rank, 'i2' as item_id, 0.5 as score, '{run_id}' as run_id")  # fmt: skip
    con.execute(f"create or replace table seg_user_recommendations as select 'u1' as user_id, 1 as rank, 'i3' as item_id, 0.5 as score, '{run_id}' as run_id")  # fmt: skip


def publish(
    con: duckdb.DuckDBPyConnection,
    exports: Path,
    run_id: str,
    segments: dict,
    at: datetime,
    pass_run: bool = True,
) -> Path:
    """The flow's publish steps; without `pass_run` the run is handed to the swap only (as the flow did)."""
    stage(con, run_id, segments, at)
    run = {"run_id": run_id, "created_at": at, "source": "shop", "embedding": "combined",
           "clusterer": "kmeans", "k": 2, "metrics": {"lift": 1.5, "bad": float("nan")}, "mlflow_run_id": "m1"}  # fmt: skip
    write_exports(con, exports, run_id, run=run if pass_run else None)
    swap_published(con, run)
    return switch_current_export(exports, run_id)


@pytest.fixture
def warehouse(tmp_path: Path):
    con = connect_warehouse(tmp_path / "warehouse.duckdb")
    con.execute("insert into items values ('i1', 'One', null, null, null, now()), ('i2', null, null, null, null, now())")  # fmt: skip
    yield con
    con.close()


@pytest.mark.parametrize("pass_run", [True, False])
def test_the_export_folder_holds_the_runs_row_and_the_titles_of_every_listed_item(
    warehouse, tmp_path, pass_run
):
    current = publish(warehouse, tmp_path / "exports", FIRST, {"u1": 0}, datetime(2026, 1, 1), pass_run)
    run = duckdb.sql(f"select run_id, source, k, metrics, mlflow_run_id, is_current from '{current}/segment_runs.parquet'").fetchall()  # fmt: skip
    assert run == [(FIRST, "shop", 2, '{"lift": 1.5, "bad": null}', "m1", True)]
    titles = duckdb.sql(f"select * from '{current}/item_titles.parquet' order by all").fetchall()
    assert titles == [("i1", "One"), ("i2", None), ("i3", None)]


def test_each_publish_opens_a_spell_per_user_and_closes_the_one_it_replaces(warehouse, tmp_path):
    exports = tmp_path / "exports"
    publish(warehouse, exports, FIRST, {"u1": 0, "u2": 1}, datetime(2026, 1, 1))
    drop_staged(warehouse)
    publish(warehouse, exports, SECOND, {"u1": 0, "u2": 0, "u3": 1}, datetime(2026, 1, 2))
    history = warehouse.execute("select * from user_segment_history order by user_id, valid_from").fetchall()
    assert history == [
        ("u1", 0, FIRST, datetime(2026, 1, 1), datetime(2026, 1, 2)),  # a new run: segment ids are its own
        ("u1", 0, SECOND, datetime(2026, 1, 2), None),
        ("u2", 1, FIRST, datetime(2026, 1, 1), datetime(2026, 1, 2)),
        ("u2", 0, SECOND, datetime(2026, 1, 2), None),
        ("u3", 1, SECOND, datetime(2026, 1, 2), None),
    ]


def test_a_publish_stopped_after_the_swap_is_finished_by_the_next_writer(warehouse, tmp_path):
    """Killed between the swap's commit and the switch: the tables hold the second run, exports/current the
    first. The next writer points current at the folder the tables match, once."""
    exports = tmp_path / "exports"
    publish(warehouse, exports, FIRST, {"u1": 0}, datetime(2026, 1, 1))
    assert published_folder(warehouse) == FIRST
    drop_staged(warehouse)
    stage(warehouse, SECOND, {"u1": 1}, datetime(2026, 1, 2))
    run = {"run_id": SECOND, "created_at": datetime(2026, 1, 2), "source": "shop", "embedding": "combined",
           "clusterer": "kmeans", "k": 2, "metrics": {}, "mlflow_run_id": "m2"}  # fmt: skip
    write_exports(warehouse, exports, SECOND, run=run)
    swap_published(warehouse, run)  # ... and no switch
    assert os.readlink(exports / "current") == FIRST and published_folder(warehouse) == SECOND
    assert restore_current_export(warehouse, exports) == SECOND
    assert os.readlink(exports / "current") == SECOND
    assert restore_current_export(warehouse, exports) is None  # nothing left to finish
    # A folder that is gone (deleted by hand) is not pointed at: current stays where it is.
    switch_current_export(exports, FIRST)
    shutil.rmtree(exports / SECOND)
    assert restore_current_export(warehouse, exports) is None and os.readlink(exports / "current") == FIRST


def test_a_record_older_than_the_current_run_is_not_followed(warehouse, tmp_path):
    """A publish by a segflow that does not record its folder (before 2026-12-02: a rollback, an old worker)
    made another run current: the record names a folder of an earlier run and is not followed (it pointed
    current back at that run, and scoring used its segmenter for the current run's users). A scored folder
    of the current run is followed."""
    exports = tmp_path / "exports"
    publish(warehouse, exports, FIRST, {"u1": 0}, datetime(2026, 1, 1))
    drop_staged(warehouse)
    warehouse.execute("update segment_runs set is_current = false")
    warehouse.execute(
        "insert into segment_runs values (?, ?, 'shop', 'combined', 'kmeans', 2, '{}', 'm2', true)",
        [SECOND, datetime(2026, 1, 2)],
    )
    (exports / SECOND).mkdir()
    switch_current_export(exports, SECOND)
    assert published_folder(warehouse) is None
    assert restore_current_export(warehouse, exports) is None and os.readlink(exports / "current") == SECOND
    scored = f"{SECOND}-scored-20260103T000000-cccccc"
    (exports / scored).mkdir()
    warehouse.execute("update published_export set folder = ?", [scored])
    assert published_folder(warehouse) == scored
    assert restore_current_export(warehouse, exports) == scored and os.readlink(exports / "current") == scored


def test_scoring_measures_users_as_of_when_all_but_a_stray_few_events_had_happened(warehouse):
    """One event of a skewed clock (dated years after the rest; ingest accepts up to a day ahead) does not
    move "latest": it moved every scored user's recency by years."""
    warehouse.execute(
        "insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) "
        "select 'u' || (i % 50), 'i1', 'view', timestamp '2024-01-01' + to_minutes(i), 'shop', 'b', now() "
        "from range(2000) t(i)"
    )
    assert latest_event_time(warehouse) == datetime(2024, 1, 2, 9, 17)  # the 1,998th of 2,000 minutes
    warehouse.execute(
        "insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) "
        "values ('skewed', 'i1', 'view', timestamp '2026-12-02', 'shop', 'b', now())"
    )
    assert latest_event_time(warehouse) == datetime(2024, 1, 2, 9, 18)  # one place on, not 2026


def test_an_export_cut_short_leaves_no_folder_that_looks_like_a_snapshot(warehouse, tmp_path):
    """Its tables were written, then the segmenter could not be copied (a kill, a full disk): nothing named
    after the run appears in exports/, and the next prune deletes what was written."""
    exports = tmp_path / "exports"
    publish(warehouse, exports, FIRST, {"u1": 0}, datetime(2026, 1, 1))
    drop_staged(warehouse)
    stage(warehouse, SECOND, {"u1": 1}, datetime(2026, 1, 2))
    with pytest.raises(FileNotFoundError):
        write_exports(warehouse, exports, SECOND, segmenter_path=tmp_path / "gone.pkl")
    assert sorted(p.name for p in exports.iterdir()) == [f".partial-{SECOND}", FIRST, "current"]
    assert prune_exports(exports, keep=1) == [f".partial-{SECOND}"]
    assert sorted(p.name for p in exports.iterdir()) == [FIRST, "current"]
