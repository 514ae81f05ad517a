"""Validation as a pipeline step: pick the suite for a batch or a table, run it, report it, record it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb

from tasks.ingest.files import FileOutcome, FileStatus, refuse_file
from validation.events_batch import events_batch_suite
from validation.gate import SuiteResult, ValidationSettings, record_validation_run, run_suite
from validation.items import items_suite
from validation.published_segments import published_segments_suite
from validation.report import write_report


def validate_table(
    con: duckdb.DuckDBPyConnection,
    suite_name: str,
    table: str,
    batch_id: str,
    reports_dir: Path,
    settings: ValidationSettings,
    event_types: tuple[str, ...] = (),
    compare_table: str | None = None,
    subject: str = "",
) -> SuiteResult:
    """Run one suite over one table, write its report under `reports_dir`, record it in `validation_runs`.
    `subject` names what was validated in the report (a batch's file)."""
    if suite_name == "events_batch":
        suite = events_batch_suite(con, table, event_types, settings, compare_table=compare_table)
    elif suite_name == "items":
        suite = items_suite(table)
    elif suite_name == "published_segments":
        # `table` is the prefix of the three segment tables: "" for the published ones, "seg_" for staging.
        suite = published_segments_suite(table)
    else:
        raise ValueError(f"unknown suite {suite_name!r}")
    result = replace(run_suite(con, suite, batch_id, settings), subject=subject)
    write_report(result, reports_dir)
    record_validation_run(con, result)
    return result


def validate_staged_batch(
    con: duckdb.DuckDBPyConnection,
    outcome: FileOutcome,
    event_types: tuple[str, ...],
    settings: ValidationSettings,
    reports_dir: Path,
) -> FileOutcome:
    """The gate for one staged file: the outcome with the suite's warnings, or `failed_validation` on a
    critical failure (then nothing of the file is written).

    A file with no new rows (every row a duplicate of the warehouse, e.g. a re-delivery in new bytes, or
    every row quarantined) has no batch to validate: it passes as it is, so it never blocks its source."""
    if outcome.rows_inserted == 0:
        return outcome
    if outcome.kind == "events":
        result = validate_table(
            con,
            "events_batch",
            "stg_events_new",
            outcome.batch_id,
            reports_dir,
            settings,
            event_types,
            "events",
            subject=outcome.file,
        )
    else:
        result = validate_table(
            con, "items", "stg_items_new", outcome.batch_id, reports_dir, settings, subject=outcome.file
        )
    warnings = tuple(f"{c.description}: {c.observed}" for c in result.warnings)
    if result.success:
        return replace(outcome, warnings=outcome.warnings + warnings)
    message = (
        f"{outcome.file}: {result.describe_failures()}\n"
        f"  nothing of it was written (it would have been {outcome.counts()})"
    )
    return refuse_file(
        replace(outcome, warnings=outcome.warnings + warnings), FileStatus.FAILED_VALIDATION, message
    )
