"""The `validate-warehouse` flow: re-run the validation suites on what the warehouse holds now."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.ingest.files import new_batch_id
from tasks.validate import validate_table
from tasks.warehouse import connect_warehouse, source_settings, use_source_events
from tasks.workspace import hold_workspace, open_workspace
from validation.gate import SuiteResult, ValidationSettings


@task(cache_policy=NO_CACHE, task_run_name="validate {suite} {label}")
def validate(
    con,
    suite: str,
    table: str,
    label: str,
    reports_dir: str,
    settings: ValidationSettings,
    event_types: tuple[str, ...],
    subject: str = "",
) -> SuiteResult:
    """Run one suite over one warehouse table or view; `subject` names it (the events' source)."""
    batch_id = f"warehouse-{label}-{new_batch_id()}"
    return validate_table(
        con, suite, table, batch_id, Path(reports_dir), settings, event_types, subject=subject
    )


@flow(name="validate-warehouse")
def validate_warehouse(workspace: str | None = None) -> list[SuiteResult]:
    """Validate each source's events with that source's settings, the items, and the published segments."""
    ws = open_workspace(workspace)
    with hold_workspace(ws):
        con = connect_warehouse(ws.warehouse_path, ws.duckdb_memory_limit)
        try:
            reports_dir = str(ws.reports_dir / "validation")
            results = []
            for source, event_types, settings in source_settings(con):
                view = use_source_events(con, source)
                results.append(
                    validate(con, "events_batch", view, source, reports_dir, settings, event_types, source)
                )
            results.append(validate(con, "items", "items", "items", reports_dir, ValidationSettings(), ()))
            if con.execute("select count(*) from segment_runs where is_current").fetchall()[0][0]:
                # "" is the prefix of the published tables (staging uses "seg_").
                results.append(
                    validate(con, "published_segments", "", "segments", reports_dir, ValidationSettings(), ())
                )
            return results
        finally:
            con.close()
