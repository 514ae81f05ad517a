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
        style = {"rejected": "red", "skipped": "dim"}.get(outcome.status, "")
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
    from tasks.ingest import IngestFailedError
    from tasks.sources import SourceSpecError

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
) -> None:
    """Run the whole pipeline on a source and print a summary of what it did."""
    ws = _prepare(workspace)
    _run_ingest(ws, source, max_bad_fraction)
    _print_warehouse(ws)


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
    from tasks.demo import DemoConfig, write_demo_data

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
