"""The `score-users` flow: between retrains, new files in and every user with new events assigned by the
published run's saved segmenter, without retraining.

finish an interrupted publish -> find the published run (refused when there is none) -> ingest (new files
only) -> select the users to score -> assign -> stage -> validate (the published_segments suite, on the
tables as the swap will leave them) -> publish (export, swap, switch). Users without new events are not
touched; a failure leaves everything as it was. A file the ingest refuses (nothing of it inserted) does not
stop the users of the other files from being scored: the flow scores them, then fails with the refusal
(`RefusedFilesError`), so a schedule still reports the file while it waits to be fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

import polars as pl
import pyarrow as pa
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.ingest import IngestReport, ingest_events
from flows.recovery import finish_interrupted_publish, restored_notes
from tasks.clock import new_id
from tasks.ingest.files import IngestFailedError
from tasks.score import score
from tasks.score.score import PublishedRun, ScoredCounts
from tasks.validate import validate_table
from tasks.warehouse import connect_warehouse, latest_event_time
from tasks.workspace import hold_workspace, open_workspace
from validation.gate import ValidationFailedError, ValidationSettings

IO_RETRIES = {"retries": 2, "retry_delay_seconds": 1}


@dataclass
class ScoreSummary:
    """What a scoring did: the ingest, the run whose segmenter scored, how many users, where the exports are."""

    run_id: str
    ingest: IngestReport
    counts: ScoredCounts
    exports: str | None = None  # the new exports/current; None when nobody was scored
    notes: list[str] = field(default_factory=list)


class RefusedFilesError(IngestFailedError):
    """The ingest refused files (nothing of them inserted); the users of the others were scored: `summary`."""

    def __init__(
        self, message: str, report: IngestReport | None = None, summary: ScoreSummary | None = None
    ) -> None:
        super().__init__(message, report)
        self.summary = summary


@task(cache_policy=NO_CACHE)
def find_published_run(warehouse_path: str, memory_limit: str, exports_dir: str) -> PublishedRun:
    """The published run whose saved segmenter scores; refuses when nothing was published."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        return score.find_published_run(con, Path(exports_dir))
    finally:
        con.close()


@task(cache_policy=NO_CACHE)
def select_users(warehouse_path: str, memory_limit: str) -> tuple[pa.Table, datetime | None]:
    """Every event of the users with events since their published assignment, and of users without one; and
    where the warehouse's events end (`latest_event_time`), which they are measured as of, as a retrain
    would."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        return score.select_users_to_score(con), latest_event_time(con)
    finally:
        con.close()


@task(cache_policy=NO_CACHE)
def assign(
    published: PublishedRun, events: pa.Table, as_of: datetime | None
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, list[str]]:
    """The saved segmenter's segment, micro-segment memberships and ready list for each selected user, and a
    note when the segmenter was saved before segments had a reach."""
    return score.assign_events(published.segmenter_path, events, as_of)


@task(cache_policy=NO_CACHE)
def stage_scores(
    warehouse_path: str, memory_limit: str, run_id: str, assignments: pl.DataFrame,
    memberships: pl.DataFrame | None, recommendations: pl.DataFrame | None,
) -> ScoredCounts:  # fmt: skip
    """Stage the scored users' segments, memberships and ready lists."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        return score.stage_scores(con, run_id, assignments, memberships, recommendations)
    finally:
        con.close()


@task(cache_policy=NO_CACHE)
def validate_scores(warehouse_path: str, memory_limit: str, batch_id: str, reports_dir: str) -> None:
    """The gate a run's publish passes, on the published tables as the swap will leave them: a critical
    failure stops here, leaving them as they were."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        prefix = score.stage_next_tables(con)
        result = validate_table(
            con, "published_segments", prefix, batch_id, Path(reports_dir), ValidationSettings()
        )
    finally:
        con.close()
    if not result.success:
        raise ValidationFailedError(result.describe_failures())


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def publish_scores(
    warehouse_path: str, memory_limit: str, exports_dir: str, published: PublishedRun, name: str
) -> str:
    """Write the export folder `name`, swap the scored rows in one transaction (with their history), switch
    exports/current, then delete all but the newest export folders (an hourly schedule makes 24 a day). A
    retry after the swap committed only switches."""
    from tasks.publish.publish import (
        DEFAULT_KEEP_EXPORTS,
        prune_exports,
        published_folder,
        switch_current_export,
    )

    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        if published_folder(con) != name:
            score.write_scored_exports(con, Path(exports_dir), published, name)
            score.swap_scores(con, name)
    finally:
        con.close()
    current = switch_current_export(Path(exports_dir), name)
    prune_exports(Path(exports_dir), DEFAULT_KEEP_EXPORTS)
    return str(current)


@task(cache_policy=NO_CACHE)
def discard_scored(warehouse_path: str, memory_limit: str) -> None:
    """Drop the staged rows (after a publish, or when scoring stops before it)."""
    con = connect_warehouse(warehouse_path, memory_limit)
    try:
        score.drop_scored(con)
    finally:
        con.close()


@flow(name="score-users")
def score_users(
    source: str = "demo",
    workspace: str | None = None,
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05,
) -> ScoreSummary:
    """Ingest new files, then assign every user with new events (and every new user) with the published
    run's saved segmenter, without retraining; the published tables change for them only.

    Args:
        source: Where new files arrive: demo, demo:N, movielens:DIR or the path of a source spec (.toml).
        workspace: The workspace folder a `segflow run` published to (default: env SEGFLOW_WORKSPACE, else
            ./workspace, relative to the worker's working directory).
        max_bad_fraction: Reject a file whose share of bad rows is above this (0 to 1).
    """
    ws = open_workspace(workspace)
    warehouse, memory = str(ws.warehouse_path), ws.duckdb_memory_limit
    with hold_workspace(ws):
        restored = finish_interrupted_publish(warehouse, memory, str(ws.exports_dir))
        # Refused before anything is ingested: new files in a workspace with nothing published would wait
        # there for the next full run.
        published = find_published_run(warehouse, memory, str(ws.exports_dir))
        try:
            report, refused = (
                ingest_events(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction),
                None,
            )
        except (
            IngestFailedError
        ) as error:  # refused files: nothing of them is in; the others' users are scored
            if error.report is None:
                raise
            report, refused = error.report, error
        counts, current, notes = ScoredCounts(0, 0, 0), None, restored_notes(restored)
        try:
            events, as_of = select_users(warehouse, memory)
            if events.num_rows:
                assignments, memberships, recommendations, assign_notes = assign(published, events, as_of)
                notes = [*notes, *assign_notes]
                counts = stage_scores(
                    warehouse, memory, published.run_id, assignments, memberships, recommendations
                )
                name = f"{published.run_id}-scored-{new_id()}"
                validate_scores(warehouse, memory, name, str(ws.reports_dir / "validation"))
                current = publish_scores(warehouse, memory, str(ws.exports_dir), published, name)
        finally:
            discard_scored(warehouse, memory)
    summary = ScoreSummary(published.run_id, report, counts, current, notes)
    if counts.n_scored:  # a scoring that also refused files published too: Prefect shows what it did
        create_markdown_artifact(
            key="score-summary",
            markdown=_markdown(summary),
            description=f"segflow scoring with {published.run_id}",
        )
        create_table_artifact(
            key="scored-users-by-segment",
            table=[{"segment_id": segment, "scored_users": n} for segment, n in counts.by_segment],
            description="Users scored in this run, by segment",
        )
    if refused is not None:
        raise RefusedFilesError(str(refused), report, summary)
    return summary


def _markdown(summary: ScoreSummary) -> str:
    counts = summary.counts
    lines = [
        f"# segflow scoring with run {summary.run_id}", "",
        f"{counts.n_scored} users scored: {counts.n_new} new, {counts.n_moved} moved to another segment", "",
        "| segment | scored users |", "|---|---|",
    ]  # fmt: skip
    lines += [f"| {segment} | {n} |" for segment, n in counts.by_segment]
    return "\n".join(lines)
