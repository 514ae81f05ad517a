"""The `ingest-events` flow: every file of a source into the warehouse, once."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks.ingest import files as ingest_files
from tasks.ingest.files import FileOutcome, IngestFailedError, SourceFile
from tasks.ingest.sources import SourceSpec, resolve_source
from tasks.validate import validate_staged_batch
from tasks.warehouse import connect_warehouse, transaction
from tasks.workspace import hold_workspace, open_workspace


@dataclass
class IngestReport:
    """What an ingest did, file by file."""

    source: str
    files: list[FileOutcome] = field(default_factory=list)


@task(cache_policy=NO_CACHE)
def discover(source: str, sources_dir: str) -> tuple[SourceSpec, list[SourceFile]]:
    """Resolve the source and list its files."""
    from pathlib import Path

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
        outcome.status = "skipped"
        return outcome
    ingest_files.stage_file(con, file)
    ingest_files.map_file(con, file)
    ingest_files.check_file(con, file, spec.event_types)
    ingest_files.count_file(con, outcome)
    if outcome.bad_fraction > max_bad_fraction:
        outcome.status = "rejected"
        outcome.message = ingest_files.describe_rejection(outcome, max_bad_fraction)
    return outcome


@task(cache_policy=NO_CACHE, task_run_name="validate {outcome.file}")
def validate(
    con: duckdb.DuckDBPyConnection, outcome: FileOutcome, spec: SourceSpec, reports_dir: str
) -> None:
    """The gate: run the batch's Great Expectations suite; a critical failure stops the file."""
    from pathlib import Path

    validate_staged_batch(con, outcome, spec.event_types, spec.validation, Path(reports_dir))


@task(cache_policy=NO_CACHE, task_run_name="quarantine {outcome.file}")
def quarantine(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Keep every bad row of the file, with its raw record and reason."""
    return ingest_files.quarantine_rows(con, outcome)


@task(cache_policy=NO_CACHE, task_run_name="insert {outcome.file}")
def insert(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> int:
    """Insert the file's new rows."""
    return ingest_files.insert_rows(con, outcome)


@task(cache_policy=NO_CACHE, task_run_name="record {outcome.file}")
def record(con: duckdb.DuckDBPyConnection, outcome: FileOutcome) -> None:
    """Write the file's manifest row."""
    ingest_files.record_manifest(con, outcome)


@flow(name="ingest-events", log_prints=True)
def ingest_events(
    source: str = "demo", workspace: str | None = None, max_bad_fraction: float = 0.05
) -> IngestReport:
    """Ingest every file of a source (demo, movielens:DIR or a source spec .toml) into the warehouse.

    A file already ingested is skipped; a file with more than `max_bad_fraction` bad rows is rejected whole;
    a file whose batch fails a critical expectation is not inserted (`failed_validation`).
    """
    ws = open_workspace(workspace)
    report = IngestReport(source=source)
    with hold_workspace(ws):
        spec, files = discover(source, str(ws.sources_dir))
        report.source = spec.name
        con = connect_warehouse(ws.warehouse_path, ws.duckdb_memory_limit)
        try:
            remember_source(con, spec)
            for file in files:
                outcome = stage(con, file, spec, max_bad_fraction)
                if outcome.status == "staged":
                    validate(con, outcome, spec, str(ws.reports_dir / "validation"))
                if outcome.status == "staged":
                    with transaction(con):
                        quarantine(con, outcome)
                        insert(con, outcome)
                        outcome.status = "ingested"
                        record(con, outcome)
                elif outcome.status in ("rejected", "failed_validation"):
                    record(con, outcome)
                report.files.append(outcome)
            ingest_files.drop_staging(con)
        finally:
            con.close()
    failed = [o.message for o in report.files if o.status in ("rejected", "failed_validation")]
    if failed:
        raise IngestFailedError("\n".join(failed), report)
    return report
