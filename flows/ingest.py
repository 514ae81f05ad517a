"""The `ingest-events` flow: every file of a source into the warehouse, once.

The file's steps share the flow's DuckDB connection: its staging tables are temporary tables of that
connection, and quarantine, insert and record run in one transaction on it; once it commits, the file's events
land in the Parquet lake too (tasks/ingest/lake.py). Each task returns a new FileOutcome and changes none of
its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.ingest import files as ingest_files
from tasks.ingest import lake
from tasks.ingest.files import FileOutcome, FileStatus, IngestFailedError, SourceFile
from tasks.ingest.sources import SourceSpec, resolve_source
from tasks.validate import validate_staged_batch
from tasks.warehouse import connect_warehouse, transaction
from tasks.workspace import hold_workspace, open_workspace


@dataclass
class IngestReport:
    """What an ingest did, file by file."""

    source: str
    files: list[FileOutcome] = field(default_factory=list)
    timezone: str | None = None  # the source's local time zone (its spec's `timezone`; None: not named)


@task(cache_policy=NO_CACHE)
def discover(source: str, sources_dir: str) -> tuple[SourceSpec, list[SourceFile]]:
    """Resolve the source and list its files."""
    spec = resolve_source(source, Path(sources_dir))
    return spec, ingest_files.discover_files(spec)


@task(cache_policy=NO_CACHE)
def remember_source(con: duckdb.DuckDBPyConnection, spec: SourceSpec) -> None:
    """Keep the source's event types and validation settings, for `segflow validate`."""
    ingest_files.record_source(con, spec)


@task(cache_policy=NO_CACHE, task_run_name="stage {file.path.name}")
def stage(
    con: duckdb.DuckDBPyConnection, file: SourceFile, spec: SourceSpec, max_bad_fraction: float
) -> FileOutcome:
    """Stage, map, check and dedupe one file; skip it when its content was ingested before."""
    outcome = FileOutcome(
        source=file.source, file=str(file.path), kind=file.kind, sha256=ingest_files.file_sha256(file.path),
        batch_id=ingest_files.new_batch_id(),
    )  # fmt: skip
    if ingest_files.is_already_ingested(con, file.kind, outcome.sha256):
        return ingest_files.with_status(outcome, FileStatus.SKIPPED)
    return ingest_files.prepare_file(con, outcome, file, spec.event_types, max_bad_fraction)


@task(cache_policy=NO_CACHE, task_run_name="validate {outcome.file}")
def validate(
    con: duckdb.DuckDBPyConnection, outcome: FileOutcome, spec: SourceSpec, reports_dir: str
) -> FileOutcome:
    """The gate: run the batch's Great Expectations suite; a critical failure stops the file."""
    return validate_staged_batch(con, outcome, spec.event_types, spec.validation, Path(reports_dir))


@task(cache_policy=NO_CACHE, task_run_name="quarantine {outcome.file}")
def quarantine(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Keep every bad row of the file, with its raw record and reason."""
    return ingest_files.quarantine_rows(con, outcome)


@task(cache_policy=NO_CACHE, task_run_name="insert {outcome.file}")
def insert(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Insert the file's new rows."""
    return ingest_files.insert_rows(con, outcome)


@task(cache_policy=NO_CACHE, task_run_name="record {outcome.file}")
def record(con: duckdb.DuckDBPyConnection, outcome: FileOutcome, status: FileStatus) -> FileOutcome:
    """Write the file's manifest row with its final status; returns the outcome as recorded."""
    return ingest_files.record_manifest(con, ingest_files.with_status(outcome, status))


@task(cache_policy=NO_CACHE)
def sync_lake(con: duckdb.DuckDBPyConnection, lake_dir: str) -> tuple[int, int]:
    """Bring the Parquet lake in line with the warehouse (batches a crash left out, a workspace from before
    the lake); returns the batches written and removed."""
    return lake.sync_lake(con, Path(lake_dir))


@task(cache_policy=NO_CACHE, task_run_name="land {outcome.file}")
def land(con: duckdb.DuckDBPyConnection, outcome: FileOutcome, lake_dir: str) -> int:
    """Write the file's inserted events to the Parquet lake, by event date; returns the rows written."""
    return lake.write_lake_batch(con, Path(lake_dir), outcome.batch_id)


@flow(name="ingest-events", log_prints=True)
def ingest_events(
    source: str = "demo", workspace: str | None = None, max_bad_fraction: float = 0.05
) -> IngestReport:
    """Ingest every file of a source (demo, movielens:DIR or a source spec .toml) into the warehouse.

    A file already ingested is skipped; a file with more than `max_bad_fraction` bad rows, or one that cannot
    be read, is rejected whole; a file whose batch fails a critical expectation is not inserted
    (`failed_validation`). After each file a record on the `segflow.progress` logger says how far it got.
    """
    ws = open_workspace(workspace)
    report = IngestReport(source=source)
    with hold_workspace(ws):
        spec, files = discover(source, str(ws.sources_dir))
        report.source, report.timezone = spec.name, spec.timezone
        con = connect_warehouse(ws.warehouse_path, ws.duckdb_memory_limit)
        try:
            ingest_files.restrict_access(con, [ws.root, *ingest_files.source_folders(files)])
            remember_source(con, spec)
            lake_dir = str(lake.lake_events_dir(ws.root))
            sync_lake(con, lake_dir)
            for index, file in enumerate(files, start=1):
                outcome = stage(con, file, spec, max_bad_fraction)
                if outcome.status is FileStatus.STAGED:
                    outcome = validate(con, outcome, spec, str(ws.reports_dir / "validation"))
                if outcome.status is FileStatus.STAGED:
                    with transaction(con):
                        quarantine(con, outcome)
                        insert(con, outcome)
                        outcome = record(con, outcome, FileStatus.INGESTED)
                    if outcome.kind == "events":
                        land(con, outcome, lake_dir)
                elif outcome.status is not FileStatus.SKIPPED:
                    outcome = record(con, outcome, outcome.status)
                report.files.append(outcome)
                ingest_files.report_progress(
                    index, len(files), sum(o.rows_read for o in report.files), outcome
                )
            ingest_files.drop_staging(con)
        finally:
            con.close()
    failed = [o.message for o in report.files if o.is_refused]
    if failed:
        raise IngestFailedError("\n".join(failed), report)
    return report
