"""Scoring users between retrains: every user with events ingested since their published assignment (or with
no assignment at all) is assigned by the published run's saved segmenter, and the published tables and
`exports/current` change for them only, all at once or not at all (the publish pattern: stage, export to a
new folder, swap in one transaction, switch `exports/current`). Users without new events are not touched.

The staged assignments are `seg_user_segments` (as a full run stages them, so the history is written by the
same statements), the staged memberships and lists `scr_user_memberships` and `scr_user_recommendations`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from tasks.clock import utc_now
from tasks.publish.publish import (
    RUN_FILE,
    SEGMENTER_FILE,
    export_folder,
    published_folder,
    record_export,
    record_history,
)
from tasks.warehouse import create_table_from_frame, load_sql, transaction, warehouse_tables

# Published table -> the staged table holding the scored users' rows.
SCORED_TABLES = {
    "user_segments": "seg_user_segments",
    "user_memberships": "scr_user_memberships",
    "user_recommendations": "scr_user_recommendations",
}


class ScoringError(RuntimeError):
    """Nothing to score with: no published run, or a published run without its saved segmenter."""


@dataclass(frozen=True)
class PublishedRun:
    """The published run whose saved segmenter scores new users, and its export folder."""

    run_id: str
    folder: Path

    @property
    def segmenter_path(self) -> Path:
        return self.folder / SEGMENTER_FILE


@dataclass(frozen=True)
class ScoredCounts:
    """How many users were scored: new ones, and known ones whose segment changed."""

    n_scored: int
    n_new: int
    n_moved: int
    by_segment: tuple[tuple[int, int], ...] = ()  # (segment_id, scored users), by segment
    by_placement: tuple[tuple[str, int], ...] = ()  # (placed_by, scored users): tasks/segment/reach.py


def find_published_run(con: duckdb.DuckDBPyConnection, exports_dir: Path) -> PublishedRun:
    """The current run and its export folder; a ScoringError when nothing (or no segmenter) was published."""
    rows = con.execute("select run_id from segment_runs where is_current").fetchall()
    if not rows:
        raise ScoringError(
            f"no segments published in {exports_dir.parent} yet: run `segflow run --workspace "
            f"{exports_dir.parent}` first; scoring assigns new "
            "users with its saved segmenter"
        )
    folder = published_folder(con)  # the folder the tables match (exports/current, once a writer restored it)
    published = PublishedRun(
        rows[0][0], exports_dir / folder if folder else Path(os.path.realpath(exports_dir / "current"))
    )
    if not published.folder.is_dir():
        raise ScoringError(
            f"the export folder of run {published.run_id} ({published.folder}) is gone: run `segflow run` to "
            "publish again"
        )
    if not published.segmenter_path.is_file():
        raise ScoringError(
            f"run {published.run_id} saved no segmenter in {published.folder}: run `segflow run` to publish "
            "a run that can score new users"
        )
    return published


def select_users_to_score(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Remember the users to score (`scr_users`) and return all their events, in the segmenter's columns."""
    con.execute(f"create or replace table scr_users as {load_sql('scoring/scr_users_to_score')}")
    return con.sql(load_sql("scoring/scr_events_to_score")).to_arrow_table()


def assign_events(
    segmenter_path: Path, events: pa.Table, as_of: datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, list[str]]:
    """Each user's segment and distance, their micro-segment memberships and their ready list (None without a
    micro level), as the saved segmenter gives them measured as of `as_of` (`latest_event_time`); and a note
    when the segmenter has no reach (saved before segments had one): users far from every segment then stay
    at the nearest centre, marked so."""
    from tasks.segment.segmenter import Segmenter  # the model code: imported only when there is work

    segmenter = Segmenter.load(segmenter_path)
    assignments, memberships, lists = segmenter.score(events, as_of=as_of)
    notes = []
    if segmenter.reach is None:
        notes.append(
            "the published run's segmenter was saved before segments had a reach: a user far from every "
            "segment (a newcomer with a short history) is placed by the nearest centre, not by taste; run "
            "`segflow run` to publish segments that place them"
        )
    return assignments, memberships, lists, notes


def stage_scores(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    assignments: pl.DataFrame,
    memberships: pl.DataFrame | None,
    recommendations: pl.DataFrame | None,
) -> ScoredCounts:
    """Stage the scored users' rows of the published tables; count the new users and the moved ones."""
    at = utc_now()
    rows = assignments.select(
        "user_id",
        pl.col("segment_id").cast(pl.Int32),
        pl.lit(run_id).alias("run_id"),
        pl.col("distance").round(6),
        pl.lit(at).alias("assigned_at"),
        "placed_by",
    )
    create_table_from_frame(con, "seg_user_segments", rows, order_by="user_id")
    if memberships is not None and recommendations is not None:
        for table, frame, order in (
            ("scr_user_memberships", memberships, "user_id, weight desc"),
            ("scr_user_recommendations", recommendations, "user_id, rank"),
        ):
            create_table_from_frame(
                con, table, frame.with_columns(pl.lit(run_id).alias("run_id")), order_by=order
            )
    n_scored, n_new, n_moved = con.execute(
        """
        select
            count(*),
            count(*) filter (where published.user_id is null),
            count(*) filter (where published.segment_id <> scored.segment_id),
        from seg_user_segments as scored
        left join user_segments as published on published.user_id = scored.user_id
        """
    ).fetchall()[0]
    by_segment = con.execute(
        "select segment_id, count(*) from seg_user_segments group by segment_id order by segment_id"
    ).fetchall()
    by_placement = con.execute(
        "select placed_by, count(*) from seg_user_segments group by placed_by order by placed_by"
    ).fetchall()
    return ScoredCounts(n_scored, n_new, n_moved, tuple(by_segment), tuple(by_placement))


def staged_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The published tables this scoring changes, with their staged rows."""
    present = set(warehouse_tables(con))
    return {table: staged for table, staged in SCORED_TABLES.items() if staged in present}


PUBLISHED_TABLES = ("user_segments", "segment_profiles", "segment_recommendations", "user_memberships",
                    "micro_segment_recommendations", "user_recommendations")  # fmt: skip
NEXT_PREFIX = "scr_next_"


def stage_next_tables(con: duckdb.DuckDBPyConnection) -> str:
    """Temp views `scr_next_<table>` of this connection: the published tables as the swap will leave them,
    for the gate to check before it (the `published_segments` suite reads them by this prefix)."""
    changed = staged_tables(con)
    for table in PUBLISHED_TABLES:
        staged = changed.get(table)
        rows = (
            f"select * from {table} where user_id not in (select user_id from {staged}) "
            f"union all by name select * from {staged}"
            if staged
            else f"select * from {table}"
        )
        con.execute(f"create or replace temp view {NEXT_PREFIX}{table} as {rows}")
    return NEXT_PREFIX


def write_scored_exports(
    con: duckdb.DuckDBPyConnection, exports_dir: Path, published: PublishedRun, name: str
) -> Path:
    """A new export folder (not yet current): the published folder's files, with the tables scoring changes
    written as they will be after the swap."""
    changed = staged_tables(con)
    with export_folder(exports_dir, name) as folder:
        for path in published.folder.iterdir():
            if path.is_file() and path.stem not in changed:
                shutil.copyfile(path, folder / path.name)
        for table, staged in changed.items():
            con.execute(
                f"""
                copy (
                    select * from (
                        select * from {table} anti join {staged} using (user_id)
                        union all by name
                        select * from {staged}
                    ) order by user_id
                ) to $path (format parquet)
                """,
                {"path": str(folder / f"{table}.parquet")},
            )
        if not (folder / RUN_FILE).exists():  # a folder published before the run was exported with it
            query = "copy (select * from segment_runs where is_current) to $path (format parquet)"
            con.execute(query, {"path": str(folder / RUN_FILE)})
    return exports_dir / name


def swap_scores(con: duckdb.DuckDBPyConnection, folder: str) -> None:
    """Replace the scored users' rows of the published tables and write their history, all or nothing;
    `exports/<folder>` (written by `write_scored_exports`) holds them."""
    changed = staged_tables(con)
    with transaction(con):
        for table, staged in changed.items():
            con.execute(f"delete from {table} where user_id in (select user_id from {staged})")
            con.execute(f"insert into {table} by name select * from {staged}")
        record_history(con)
        record_export(con, folder)


def drop_scored(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the staged rows (after a swap, or when scoring stops before it)."""
    for staged in ("scr_users", *SCORED_TABLES.values()):
        con.execute(f"drop table if exists {staged}")
