"""The `segflow` command line. It sets the environment up, then starts flows; it holds no logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tasks.workspace import Workspace, WorkspaceBusyError, configure_environment, open_workspace

app = typer.Typer(
    help="segflow: raw user-behaviour events in, user segments that recommenders can use out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace", "-w", envvar="SEGFLOW_WORKSPACE", help="Folder that holds everything a run writes."
    ),
]
SourceOption = Annotated[
    str,
    typer.Option("--source", "-s", help="demo, demo:N_USERS, movielens:DIR, or PATH.toml (a source spec)."),
]
MaxBadOption = Annotated[
    float,
    typer.Option(
        "--max-bad-fraction", help="Reject a file whose share of bad rows is above this.", min=0, max=1
    ),
]


def _prepare(workspace: Path) -> Workspace:
    ws = open_workspace(workspace)
    configure_environment(ws)
    return ws


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


def _print_ingest(report) -> None:
    table = Table(title=f"ingest of {report.source}", title_justify="left")
    for column in ("file", "kind", "status", "read", "inserted", "duplicate", "quarantined"):
        table.add_column(
            column, justify="right" if column in ("read", "inserted", "duplicate", "quarantined") else "left"
        )
    for outcome in report.files:
        style = {"rejected": "red", "failed_validation": "red", "skipped": "dim"}.get(outcome.status, "")
        table.add_row(
            Path(outcome.file).name, outcome.kind, outcome.status, f"{outcome.rows_read:,}",
            f"{outcome.rows_inserted:,}", f"{outcome.rows_duplicate:,}", f"{outcome.rows_quarantined:,}", style=style,
        )  # fmt: skip
    console.print(table)
    for outcome in report.files:
        for warning in outcome.warnings:
            console.print(f"[yellow]warning[/] {Path(outcome.file).name}: {warning}", highlight=False)


def _print_warehouse(ws: Workspace) -> None:
    from tasks.warehouse import describe_warehouse

    counts = describe_warehouse(ws.warehouse_path)
    console.print(
        f"warehouse [bold]{ws.warehouse_path}[/]: {counts['events']:,} events from {counts['users']:,} users on "
        f"{counts['items']:,} items; {counts['quarantine']:,} rows in quarantine",
        highlight=False,
    )


def _run_ingest(ws: Workspace, source: str, max_bad_fraction: float):
    from flows.ingest import ingest_events
    from tasks.ingest.files import IngestFailedError
    from tasks.ingest.sources import SourceSpecError

    try:
        with console.status(f"ingesting {source} ..."):
            report = ingest_events(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction)
    except IngestFailedError as error:
        if error.report is not None:
            _print_ingest(error.report)
        _fail(
            f"{error}\nNothing of a rejected or failed file was inserted. Raise --max-bad-fraction to accept a "
            "rejected file; see the validation report for a failed one."
        )
    except (SourceSpecError, WorkspaceBusyError) as error:
        _fail(str(error))
    _print_ingest(report)
    return report


@app.command()
def ingest(
    source: SourceOption = "demo",
    workspace: WorkspaceOption = Path("workspace"),
    max_bad_fraction: MaxBadOption = 0.05,
) -> None:
    """Ingest a source's event files into the workspace's DuckDB warehouse (idempotent)."""
    ws = _prepare(workspace)
    _run_ingest(ws, source, max_bad_fraction)
    _print_warehouse(ws)


@app.command()
def run(
    source: SourceOption = "demo",
    workspace: WorkspaceOption = Path("workspace"),
    max_bad_fraction: MaxBadOption = 0.05,
    embedding: Annotated[str, typer.Option(help="behaviour, svd or combined.")] = "combined",
    clusterer: Annotated[str, typer.Option(help="kmeans, hdbscan or agglomerative.")] = "kmeans",
    k: Annotated[str, typer.Option("--k", help="Number of segments, or auto.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the whole pipeline on a source: ingest, validate, features, embed, cluster, evaluate, publish."""
    ws = _prepare(workspace)
    from flows.segment_users import segment_users
    from tasks.ingest.files import IngestFailedError
    from tasks.ingest.sources import SourceSpecError
    from tasks.segment.segmenter import SegmentationError
    from tasks.segment.settings import SegmentSettings
    from validation.gate import ValidationFailedError

    try:
        settings = SegmentSettings(
            embedding=embedding, clusterer=clusterer, k=k if k == "auto" else int(k), seed=seed
        )
    except ValueError as error:
        _fail(f"bad segment settings: {error}")
    try:
        with console.status(
            f"segmenting users of {source} (ingest, features, embed, cluster, evaluate, publish) ..."
        ):
            summary = segment_users(
                source=source, workspace=str(ws.root), settings=settings, max_bad_fraction=max_bad_fraction
            )
    except IngestFailedError as error:
        if error.report is not None:
            _print_ingest(error.report)
        _fail(f"{error}\nNothing was published; the previous segments are unchanged.")
    except (SourceSpecError, WorkspaceBusyError, ValidationFailedError, SegmentationError) as error:
        _fail(f"{error}\nNothing was published; the previous segments are unchanged.")
    _print_ingest(summary.ingest)
    _print_warehouse(ws)
    _print_segments(summary.profiles)
    _print_metrics(summary.metrics)
    for name, where in summary.locations.items():
        console.print(f"[bold]{name}[/]: {where}", highlight=False)


def _print_segments(profiles: list[dict]) -> None:
    table = Table(title="segments", title_justify="left")
    for column in ("id", "label", "users", "share", "top categories"):
        table.add_column(column, justify="right" if column in ("id", "users", "share") else "left")
    for p in profiles:
        table.add_row(
            str(p["segment_id"]),
            p["label"],
            f"{p['size']:,}",
            f"{p['share']:.1%}",
            ", ".join(p["top_categories"]),
        )
    console.print(table)


def _print_metrics(metrics: dict[str, float]) -> None:
    from tasks.track.report import headline_metrics

    table = Table(title="how good the segments are", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in headline_metrics(metrics):
        table.add_row(label, value)
    console.print(table)
    if "segments/recall@10" not in metrics:
        console.print(
            "[yellow]note[/] no user has 5 or more distinct items, so how well segments predict what users do "
            "next was not measured",
            highlight=False,
        )


@app.command()
def segments(workspace: WorkspaceOption = Path("workspace")) -> None:
    """Print the current segments."""
    ws = _prepare(workspace)
    from tasks.warehouse import read_published

    profiles = read_published(ws.warehouse_path, "select * from segment_profiles order by segment_id")
    if profiles is None:
        _fail(f"no segments published in {ws.root} yet: run `segflow run` first")
    run = read_published(
        ws.warehouse_path,
        "select run_id, created_at, source, embedding, clusterer, k from segment_runs where is_current",
    )
    if run:
        r = run[0]
        console.print(
            f"run {r['run_id']} ({r['created_at']:%Y-%m-%d %H:%M}) on {r['source']}: {r['embedding']} + {r['clusterer']}, K = {r['k']}",
            highlight=False,
        )
    _print_segments(profiles)


@app.command()
def user(
    user_id: Annotated[str, typer.Argument(help="The user's id, as in events.user_id.")],
    workspace: WorkspaceOption = Path("workspace"),
    n: Annotated[int, typer.Option("-n", help="How many recommendations.")] = 10,
) -> None:
    """Print a user's segment, its label and the user's top recommendations (items they have seen excluded)."""
    ws = _prepare(workspace)
    from tasks.warehouse import read_published, recommend_for_user

    found = read_published(
        ws.warehouse_path,
        "select s.segment_id, p.label, s.distance from user_segments s join segment_profiles p using (segment_id) where s.user_id = $user",
        {"user": user_id},
    )
    if found is None:
        _fail(f"no segments published in {ws.root} yet: run `segflow run` first")
    if not found:
        _fail(f"user {user_id!r} has no segment (not in the events of the last run); the global list applies")
    segment = found[0]
    console.print(
        f"user [bold]{user_id}[/] is in segment {segment['segment_id']}: {segment['label']}", highlight=False
    )
    table = Table(title=f"top {n} recommendations (seen items excluded)", title_justify="left")
    for column in ("rank", "item", "title", "score"):
        table.add_column(column)
    for i, row in enumerate(
        recommend_for_user(ws.warehouse_path, user_id, segment["segment_id"], n), start=1
    ):
        table.add_row(str(i), row["item_id"], row["title"] or "", f"{row['score']:.3f}")
    console.print(table)


@app.command()
def validate(workspace: WorkspaceOption = Path("workspace")) -> None:
    """Re-run the validation suites on the current warehouse and print what each found."""
    ws = _prepare(workspace)
    from flows.validate import validate_warehouse

    try:
        with console.status("validating the warehouse ..."):
            results = validate_warehouse(workspace=str(ws.root))
    except WorkspaceBusyError as error:
        _fail(str(error))
    table = Table(title="validation", title_justify="left")
    for column in ("suite", "expectation", "severity", "status", "observed"):
        table.add_column(column)
    for result in results:
        for check in result.checks:
            status = (
                "[green]passed[/]"
                if check.success
                else ("[red]FAILED[/]" if check.severity == "critical" else "[yellow]warning[/]")
            )
            table.add_row(result.suite, check.description, check.severity, status, check.observed)
    console.print(table)
    for result in results:
        console.print(f"report: {result.report_path}", highlight=False)
    console.print(f"all reports: {ws.reports_dir / 'validation' / 'index.html'}", highlight=False)
    if any(not result.success for result in results):
        raise typer.Exit(code=1)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the demo files into.")],
    users: Annotated[int, typer.Option("--users", min=1, help="Number of users.")] = 3000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")
    ] = 42,
) -> None:
    """Write the demo shop as files: events.csv, items.csv, users.csv (planted segments) and source.toml."""
    from tasks.ingest.demo import DemoConfig, write_demo_data

    counts = write_demo_data(out, DemoConfig(n_users=users, seed=seed))
    console.print(
        f"wrote {counts['events']:,} events of {counts['users']:,} users on {counts['items']:,} items to {out}\n"
        f"ingest them with: segflow ingest --source {out / 'source.toml'}",
        highlight=False,
    )


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="segflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
