"""Publishing segments atomically: stage, validate, write exports, swap in one transaction, switch
`exports/current`. A failure at any step leaves the published tables and `exports/current` as they were.

An export folder holds the published tables, the titles of every listed item, the run's own `segment_runs`
row and the run's segmenter: a reader needs nothing else. It is written whole or not at all (`export_folder`).
The swap also writes `user_segment_history`."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from tasks.clock import utc_now
from tasks.embed.registry import EMBEDDERS
from tasks.warehouse import create_table_from_frame, load_sql, transaction, warehouse_tables

PUBLISHED_TABLES = (
    "user_segments",
    "segment_recommendations",
    "segment_profiles",
    "micro_segments",
    "micro_segment_recommendations",
    "user_memberships",
    "user_recommendations",
)
SEGMENTER_FILE = "segmenter.pkl"
TITLES_FILE = "item_titles.parquet"
RUN_FILE = "segment_runs.parquet"
# An export folder being written: `exports/.partial-<name>/`, renamed to `exports/<name>` once complete.
PARTIAL_PREFIX = ".partial-"


def stage_user_segments(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    con.execute(
        """
        create or replace table seg_user_segments as
        select user_id, segment_id, $run_id as run_id, round(distance, 6) as distance, $at as assigned_at,
            placed_by,
        from seg_assignments
        order by user_id
        """,
        {"run_id": run_id, "at": utc_now()},
    )
    return "seg_user_segments"


def stage_tables(con: duckdb.DuckDBPyConnection, frames: dict[str, pl.DataFrame], run_id: str) -> list[str]:
    """Stage published tables computed as frames (`seg_<name>`, with the run id)."""
    return [
        create_table_from_frame(con, f"seg_{name}", frame.with_columns(pl.lit(run_id).alias("run_id")))
        for name, frame in frames.items()
    ]


def write_exports(
    con: duckdb.DuckDBPyConnection,
    exports_dir: Path,
    run_id: str,
    segmenter_path: Path | None = None,
    run: dict | None = None,
) -> Path:
    """The staged tables as Parquet, the titles of the items they list, the run's segmenter and (when `run`
    is given) the run's `segment_runs` row, in `exports/<run_id>/` (not yet current)."""
    with export_folder(exports_dir, run_id) as folder:
        for table in PUBLISHED_TABLES:
            con.execute(
                f"copy seg_{table} to $path (format parquet)", {"path": str(folder / f"{table}.parquet")}
            )
        con.execute(
            f"copy ({load_sql('publish/exp_item_titles')}) to $path (format parquet)",
            {"path": str(folder / TITLES_FILE)},
        )
        if run is not None:
            write_run_export(con, folder, run)
        if segmenter_path is not None:
            shutil.copyfile(segmenter_path, folder / SEGMENTER_FILE)
    out_dir = exports_dir / run_id
    # Remembered on this connection, so the swap can add the run's row when the caller did not pass it here.
    con.execute(
        "create or replace temp table seg_export_folder as select $path::varchar as path",
        {"path": str(out_dir)},
    )
    return out_dir


@contextlib.contextmanager
def export_folder(exports_dir: Path, name: str) -> Iterator[Path]:
    """A folder to write `exports/<name>` in: `exports/.partial-<name>/`, renamed to `exports/<name>` when the
    block ends without an error. A run killed while writing leaves only the hidden folder, which the next
    prune deletes: a half-written folder looked like a snapshot and took a complete one's place among the
    kept (helper 38). A folder of that name that is not current (a retry's) is replaced."""
    partial = exports_dir / f"{PARTIAL_PREFIX}{name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    final = exports_dir / name
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.rename(partial, final)


def write_run_export(con: duckdb.DuckDBPyConnection, out_dir: Path, run: dict) -> Path:
    """The run's `segment_runs` row as `segment_runs.parquet` in its export folder."""
    path = out_dir / RUN_FILE
    params = {**run, "metrics": metrics_json(run["metrics"]), "path": str(path)}
    con.execute(f"copy ({load_sql('publish/exp_segment_run')}) to $path (format parquet)", params)
    return path


def swap_published(con: duckdb.DuckDBPyConnection, run: dict) -> None:
    """Replace the published tables with the staged ones and make `run` the current one, all or nothing. The
    run's row is first added to the export folder `write_exports` wrote on this connection, if it lacks it."""
    folder = staged_export_folder(con)
    if folder is not None and not (folder / RUN_FILE).exists():
        write_run_export(con, folder, run)
    with transaction(con):
        for table in PUBLISHED_TABLES:  # the tables keep their DDL (sql/warehouse/); only the rows change
            con.execute(f"delete from {table}")
            con.execute(f"insert into {table} by name select * from seg_{table}")
        # Beside them, with the run's own columns (no fixed DDL): its feature tables and its embedding, renamed
        # into place (a copy of 20M interactions held the writer 10 s longer).
        for table in staged_feature_tables(con):
            con.execute(f"drop table if exists {table}")
            con.execute(f"alter table seg_{table} rename to {table}")
        # emb_<family>: where segflow kept the embedding before 2026-12-02, one table per family ever published
        # (a table of the user's own named emb_something stays).
        for table in sorted(set(warehouse_tables(con)) & {f"emb_{family}" for family in EMBEDDERS}):
            con.execute(f"drop table {table}")
        record_history(con)
        record_export(con, folder.name if folder is not None else run["run_id"])
        con.execute("update segment_runs set is_current = false where is_current")
        con.execute(
            """
            insert into segment_runs values (
                $run_id, $created_at, $source, $embedding, $clusterer, $k, $metrics, $mlflow_run_id, true
            )
            """,
            {**run, "metrics": metrics_json(run["metrics"])},
        )
    drop_staged(con)


def staged_export_folder(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The export folder `write_exports` wrote on this connection; None when it did not."""
    try:
        rows = con.execute("select path from seg_export_folder").fetchall()
    except duckdb.CatalogException:
        return None
    return Path(rows[0][0]) if rows else None


def staged_feature_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The names (without `seg_`) of the feature tables and embedding staged on this warehouse."""
    return [
        name.removeprefix("seg_")
        for name in warehouse_tables(con)
        if name.startswith("seg_fct_") or name == "seg_user_embedding"
    ]


def record_export(con: duckdb.DuckDBPyConnection, folder: str) -> None:
    """Inside a swap's transaction: `exports/<folder>` holds what the published tables now hold."""
    con.execute("delete from published_export")
    con.execute("insert into published_export values ($folder, $at)", {"folder": folder, "at": utc_now()})


def published_folder(con: duckdb.DuckDBPyConnection) -> str | None:
    """The export folder the published tables match: the recorded one, when it is the current run's (its own
    folder, or one a scoring of it wrote). None before the first publish that recorded one, and when a
    publish that did not record it (segflow before 2026-12-02) made another run current since."""
    rows = con.execute(
        """
        select published_export.folder
        from published_export, segment_runs
        where segment_runs.is_current
            and (published_export.folder = segment_runs.run_id
                 or starts_with(published_export.folder, segment_runs.run_id || '-scored-'))
        """
    ).fetchall()
    return rows[0][0] if rows else None


def restore_current_export(con: duckdb.DuckDBPyConnection, exports_dir: Path) -> str | None:
    """Finish a publish that stopped between the swap's commit and the switch of `exports/current` (a kill, a
    full disk): point `current` at the folder the published tables match. Returns that folder's name when it
    switched, else None. Only the writer calls this, before it reads what is published."""
    folder = published_folder(con)
    current = exports_dir / "current"
    if folder is None or not (exports_dir / folder).is_dir():
        return None
    if current.is_symlink() and os.readlink(current) == folder:
        return None
    switch_current_export(exports_dir, folder)
    return folder


def record_history(con: duckdb.DuckDBPyConnection) -> None:
    """Close the history spells of staged users whose segment or run changes, and open their new ones. Call
    it inside the transaction that publishes `seg_user_segments`."""
    con.execute(load_sql("warehouse/close_user_segment_history"))
    con.execute(load_sql("warehouse/insert_user_segment_history"))


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the staged `seg_*` copies (after a swap, or when a run stops before it)."""
    for table in [*PUBLISHED_TABLES, *staged_feature_tables(con)]:
        con.execute(f"drop table if exists seg_{table}")
    con.execute("drop table if exists seg_assignments")
    con.execute("drop table if exists seg_export_folder")


def metrics_json(metrics: dict) -> str:
    """Metrics as strict JSON: NaN and infinity (e.g. a lift over a zero baseline) become null."""
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
    return json.dumps(clean)


class ExportSwitchError(RuntimeError):
    """The published tables are a run's (its swap committed) but `exports/current` could not be pointed at its
    folder: readers serve the previous folder until a writer points it there (`finish_interrupted_publish`)."""

    def __init__(self, name: str, exports_dir: Path, error: OSError) -> None:
        super().__init__(
            f"{name} is published in the warehouse, but {exports_dir / 'current'} could not be pointed at its "
            f"folder ({type(error).__name__}: {error}): the published tables are {name}'s, and readers of the "
            f"exports serve the previous folder until the next `segflow run` or `segflow score` on this "
            f"workspace points it there (the first thing each does)"
        )


def switch_current_export(exports_dir: Path, run_id: str) -> Path:
    """Point `exports/current` at `exports/<run_id>` with one atomic rename; an ExportSwitchError when it
    cannot (called after the swap committed, so the tables are already `run_id`'s)."""
    current = exports_dir / "current"
    temporary = exports_dir / f".current-{run_id}"
    try:
        if temporary.is_dir() and not temporary.is_symlink():  # not our link: nothing else is named so
            shutil.rmtree(temporary)
        elif temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(run_id, target_is_directory=True)
        os.replace(temporary, current)
    except OSError as error:
        raise ExportSwitchError(run_id, exports_dir, error) from error
    return current


DEFAULT_KEEP_EXPORTS = 5  # export folders kept: the current one and the newest others


def prune_segmenters(segmenters_dir: Path, keep: int, current: Path) -> list[str]:
    """Delete all but the `keep` newest run segmenters (`segmenters/<run_id>.pkl`; `current`, this run's, is
    always kept and counts as one). Every run's segmenter is also in MLflow (`runs:/<id>/segmenter`) and the
    published one beside its tables, so the folder need not grow with every scheduled run (272 MB each for a
    shop of 108,509 items with words). Returns the names deleted. Only the writer calls this."""
    files = sorted(segmenters_dir.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
    others = [p for p in files if p.resolve() != current.resolve()]
    deleted = []
    for path in others[max(keep - 1, 0) :]:
        path.unlink()
        deleted.append(path.name)
    return deleted


def prune_exports(exports_dir: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest export folders (by modification time; the one `exports/current` points
    at is always kept and counts as one), and the temporary links and half-written folders a crash left
    behind. Folders of runs that never became current go the same way once they are old enough. A reader
    resolves `current` once, so it reads a folder that stays for `keep - 1` more publishes. Returns the names
    deleted. Only the writer calls this."""
    import shutil

    current = exports_dir / "current"
    target = os.readlink(current) if current.is_symlink() else None
    folders = [
        p for p in exports_dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    ]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    others = [p.name for p in folders if p.name != target]
    kept = {target, *others[: max(keep - 1, 0)]}
    deleted = []
    for folder in folders:
        if folder.name not in kept:
            shutil.rmtree(folder)
            deleted.append(folder.name)
    for link in exports_dir.glob(".current-*"):
        if link.is_symlink():
            link.unlink()
            deleted.append(link.name)
    for partial in exports_dir.glob(f"{PARTIAL_PREFIX}*"):  # a write killed before its folder was complete
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial)
            deleted.append(partial.name)
    return deleted
