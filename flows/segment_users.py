"""The `segment-users` flow: ingest, validate, features, embed, cluster, evaluate, publish."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.ingest import IngestReport, ingest_events
from tasks import segment
from tasks.ingest.sources import resolve_source
from tasks.publish import profile, publish
from tasks.segment import SegmentFit, SegmentSettings
from tasks.track import charts, tracking
from tasks.track.report import headline_metrics, write_run_report
from tasks.validate import validate_table
from tasks.warehouse import connect_warehouse
from tasks.workspace import Workspace, hold_workspace, open_workspace
from validation.gate import ValidationFailedError, ValidationSettings


@dataclass
class RunSummary:
    """What a pipeline run did and where its outputs are."""

    run_id: str
    source: str
    ingest: IngestReport
    profiles: list[dict]
    metrics: dict[str, float]
    locations: dict[str, str] = field(default_factory=dict)


@task(cache_policy=NO_CACHE)
def evaluate(con: duckdb.DuckDBPyConnection, settings: SegmentSettings) -> dict[str, float]:
    """Fit segments on all but the held-out items and score their top lists against those items."""
    return segment.evaluate_on_holdout(con, settings)


@task(cache_policy=NO_CACHE)
def fit(con: duckdb.DuckDBPyConnection, settings: SegmentSettings) -> SegmentFit:
    """Features, embedding and clustering on all events: the segments that get published. The feature tables
    and the embedding (`emb_<name>`) stay in the warehouse for the models."""
    fitted = segment.fit_segments(con, settings)
    segment.store_fit(con, fitted)
    return fitted


@task(cache_policy=NO_CACHE)
def describe(
    fitted: SegmentFit, settings: SegmentSettings, source: str, sources_dir: str
) -> dict[str, float]:
    """Intrinsic metrics, stability and (when the source has planted segments) agreement with them."""
    truth = resolve_source(source, Path(sources_dir)).truth()
    return segment.describe_fit(fitted, settings, truth)


@task(cache_policy=NO_CACHE)
def stage_segments(
    con: duckdb.DuckDBPyConnection, fitted: SegmentFit, run_id: str, settings: SegmentSettings
) -> list[dict]:
    """Stage user_segments, segment_recommendations and segment_profiles as `seg_*` tables."""
    profile.write_assignments(
        con, fitted.embedding.user_ids, fitted.labels, segment.distances_to_own_centroid(fitted)
    )
    profile.build_recommendations(con, run_id, settings.n_recommendations)
    profile.build_profiles(con, run_id)
    publish.stage_user_segments(con, run_id)
    return con.sql("select * from seg_segment_profiles order by segment_id").pl().to_dicts()


@task(cache_policy=NO_CACHE)
def validate_segments(con: duckdb.DuckDBPyConnection, run_id: str, reports_dir: str) -> None:
    """The gate before publishing: a critical failure stops here, leaving the published tables as they were."""
    result = validate_table(
        con, "published_segments", "seg_", run_id, Path(reports_dir), ValidationSettings()
    )
    if not result.success:
        raise ValidationFailedError(result.describe_failures())


@task(cache_policy=NO_CACHE)
def track(
    ws_root: str, run_id: str, params: dict, metrics: dict, fitted: SegmentFit, profiles: list[dict]
) -> tuple[str, dict[str, bytes]]:
    """Log the run to MLflow; returns its run id and the charts."""
    ws = Workspace(workspace=Path(ws_root))
    figures = {
        "segment_sizes.png": charts.sizes_chart(
            [f"{p['segment_id']}: {p['label']}" for p in profiles], [p["size"] for p in profiles]
        ),
        "projection.png": charts.projection_chart(fitted.embedding.vectors, fitted.labels),
    }
    if fitted.sweep:
        figures = {"k_sweep.png": charts.k_sweep_chart(fitted.sweep, fitted.clustering.k), **figures}
    import json

    tables = {
        "segment_profiles.json": json.dumps(profiles, indent=2, default=str),
        "k_sweep.json": json.dumps(fitted.sweep, indent=2),
    }
    mlflow_run_id = tracking.log_run(
        ws.mlflow_uri, ws.mlartifacts_dir, run_id, params, metrics,
        f"{params['segments']['embedding']}/{params['segments']['clusterer']}", {**figures, **tables},
    )  # fmt: skip
    return mlflow_run_id, figures


@task(cache_policy=NO_CACHE)
def publish_segments(con: duckdb.DuckDBPyConnection, exports_dir: str, run: dict) -> str:
    """Write exports/<run_id>/, swap the published tables in one transaction, then switch exports/current."""
    publish.write_exports(con, Path(exports_dir), run["run_id"])
    publish.swap_published(con, run)
    return str(publish.switch_current_export(Path(exports_dir), run["run_id"]))


@flow(name="segment-users")
def segment_users(
    source: str = "demo",
    workspace: str | None = None,
    settings: SegmentSettings | None = None,
    max_bad_fraction: float = 0.05,
) -> RunSummary:
    """Ingest a source, then build, evaluate and publish user segments for recommenders."""
    settings = settings or SegmentSettings()
    ws = open_workspace(workspace)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    with hold_workspace(ws):
        report = ingest_events(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction)
        con = connect_warehouse(ws.warehouse_path, ws.duckdb_memory_limit)
        try:
            metrics = evaluate(con, settings)
            fitted = fit(con, settings)
            metrics |= describe(fitted, settings, source, str(ws.sources_dir))
            profiles = stage_segments(con, fitted, run_id, settings)
            validate_segments(con, run_id, str(ws.reports_dir / "validation"))
            params = {
                "source": source,
                "max_bad_fraction": max_bad_fraction,
                "segments": settings.model_dump(),
            }
            mlflow_run_id, figures = track(str(ws.root), run_id, params, metrics, fitted, profiles)
            run = {
                "run_id": run_id, "created_at": datetime.now(UTC).replace(tzinfo=None), "source": report.source,
                "embedding": settings.embedding, "clusterer": settings.clusterer, "k": fitted.clustering.k,
                "metrics": metrics, "mlflow_run_id": mlflow_run_id,
            }  # fmt: skip
            current = publish_segments(con, str(ws.exports_dir), run)
        finally:
            publish.drop_staged(con)
            con.close()
    report_path = ws.reports_dir / f"run-{run_id}.html"
    locations = {
        "warehouse": str(ws.warehouse_path),
        "exports": current,
        "run report": str(report_path),
        "validation reports": str(ws.reports_dir / "validation" / "index.html"),
        "MLflow UI": f"mlflow ui --backend-store-uri {ws.mlflow_uri} --workers 1",
    }
    write_run_report(report_path, run_id, locations, profiles, metrics, figures)
    create_markdown_artifact(
        key="segment-summary",
        markdown=_markdown(run_id, profiles, metrics, locations),
        description=f"segflow run {run_id}",
    )
    return RunSummary(run_id, report.source, report, profiles, metrics, locations)


def _markdown(run_id: str, profiles: list[dict], metrics: dict, locations: dict) -> str:
    lines = [f"# segflow run {run_id}", "", "| segment | label | users | share |", "|---|---|---|---|"]
    lines += [f"| {p['segment_id']} | {p['label']} | {p['size']} | {p['share']:.1%} |" for p in profiles]
    lines += ["", "| metric | value |", "|---|---|"] + [
        f"| {k} | {v} |" for k, v in headline_metrics(metrics)
    ]
    lines += ["", *(f"- {k}: `{v}`" for k, v in locations.items())]
    return "\n".join(lines)
