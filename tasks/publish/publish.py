"""Publishing segments atomically: stage, validate, write exports, swap in one transaction, switch
`exports/current`. A failure at any step leaves the published tables and `exports/current` as they were."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl

from tasks.clock import utc_now
from tasks.warehouse import create_table_from_frame, transaction

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


def stage_user_segments(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    con.execute(
        """
        create or replace table seg_user_segments as
        select user_id, segment_id, $run_id as run_id, round(distance, 6) as distance, $at as assigned_at,
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
    con: duckdb.DuckDBPyConnection, exports_dir: Path, run_id: str, segmenter_path: Path | None = None
) -> Path:
    """The staged tables as Parquet, and the run's segmenter, in `exports/<run_id>/` (not yet current)."""
    out_dir = exports_dir / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in PUBLISHED_TABLES:
        con.execute(
            f"copy seg_{table} to $path (format parquet)", {"path": str(out_dir / f"{table}.parquet")}
        )
    if segmenter_path is not None:
        shutil.copyfile(segmenter_path, out_dir / SEGMENTER_FILE)
    return out_dir


def swap_published(con: duckdb.DuckDBPyConnection, run: dict) -> None:
    """Replace the published tables with the staged ones and make `run` the current one, all or nothing."""
    with transaction(con):
        for table in PUBLISHED_TABLES:  # the tables keep their DDL (sql/warehouse/); only the rows change
            con.execute(f"delete from {table}")
            con.execute(f"insert into {table} by name select * from seg_{table}")
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


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the staged `seg_*` copies (after a swap, or when a run stops before it)."""
    for table in PUBLISHED_TABLES:
        con.execute(f"drop table if exists seg_{table}")
    con.execute("drop table if exists seg_assignments")


def metrics_json(metrics: dict) -> str:
    """Metrics as strict JSON: NaN and infinity (e.g. a lift over a zero baseline) become null."""
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
    return json.dumps(clean)


def switch_current_export(exports_dir: Path, run_id: str) -> Path:
    """Point `exports/current` at `exports/<run_id>` with one atomic rename."""
    current = exports_dir / "current"
    temporary = exports_dir / f".current-{run_id}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(run_id, target_is_directory=True)
    os.replace(temporary, current)
    return current
