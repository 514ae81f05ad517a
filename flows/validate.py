"""The `validate-warehouse` flow: re-run the validation suites on what the warehouse holds now."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.validate import validate_table
from tasks.warehouse import connect_warehouse, has_table, warehouse_event_types
from tasks.workspace import hold_workspace, open_workspace
from validation.gate import SuiteResult, ValidationSettings


@task(cache_policy=NO_CACHE, task_run_name="validate {table}")
def validate(con, suite: str, table: str, reports_dir: str, event_types: tuple[str, ...]) -> SuiteResult:
    """Run one suite over one warehouse table."""
    from pathlib import Path

    from tasks.ingest import new_batch_id

    return validate_table(
        con, suite, table, f"warehouse-{new_batch_id()}", Path(reports_dir), ValidationSettings(), event_types
    )


@flow(name="validate-warehouse")
def validate_warehouse(workspace: str | None = None) -> list[SuiteResult]:
    """Validate the warehouse's `events` and `items` tables (default thresholds) and the published segments."""
    ws = open_workspace(workspace)
    with hold_workspace(ws):
        con = connect_warehouse(ws.warehouse_path, ws.duckdb_memory_limit)
        try:
            reports_dir = str(ws.reports_dir / "validation")
            event_types = warehouse_event_types(con)
            results = [
                validate(con, "events_batch", "events", reports_dir, event_types),
                validate(con, "items", "items", reports_dir, ()),
            ]
            if has_table(con, "user_segments"):
                # "" is the prefix of the published tables (staging uses "seg_").
                results.append(validate(con, "published_segments", "", reports_dir, ()))
            return results
        finally:
            con.close()
