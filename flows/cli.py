"""The `segflow` command line. It sets the environment up, then starts flows (writers) or reads the published
snapshot (readers); it holds no logic of its own.

Exit codes: 0 ok; 1 refused or failed (data rejected, failed validation, nothing publishable or published,
a busy workspace, an unexpected error); 2 usage (a bad option value, an unknown source, a bad workspace).
Every failure is one `error:` line; the traceback and the libraries' logs only with `--verbose`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from tasks.workspace import (
    PrefectServer,
    Workspace,
    configure_environment,
    find_workspace,
    hold_workspace,
    open_workspace,
    start_prefect_server,
)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Failures the program explains itself, by class name (matched along the MRO, so subclasses count), with
# their exit code. Names, not imports: the handler must work even when a stage's module fails to import.
KNOWN_FAILURES = {
    "WorkspaceError": EXIT_USAGE,
    "SourceSpecError": EXIT_USAGE,
    "WorkspaceBusyError": EXIT_REFUSED,
    "WarehouseLockedError": EXIT_REFUSED,
    "PrefectServerError": EXIT_REFUSED,
    "IngestFailedError": EXIT_REFUSED,
    "ValidationFailedError": EXIT_REFUSED,
    "SegmentationError": EXIT_REFUSED,
    "ScoringError": EXIT_REFUSED,
    "DeployError": EXIT_REFUSED,
    "ExportSwitchError": EXIT_REFUSED,
}
MAX_FILES_IN_TABLE = 10  # past this an ingest prints a summary; --details prints the table anyway
MAX_WARNING_LINES = 10
PROGRESS_LOGGER = "segflow.progress"  # flows/ingest.py logs one record per file here
NOT_PUBLISHED = "Nothing was published; the previous segments are unchanged."

PIPED_WIDTH = 160


def piped_width(stream) -> int | None:
    """None (the terminal's own width) on a terminal or where COLUMNS is set; PIPED_WIDTH when the output is
    piped or redirected, where Rich's 80 columns wrapped file names and cut run ids in tables."""
    is_terminal = getattr(stream, "isatty", lambda: False)()
    return None if is_terminal or os.environ.get("COLUMNS") else PIPED_WIDTH


console = Console(highlight=False, width=piped_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, width=piped_width(sys.stderr))


def print_line(*parts: str | tuple[str, str], err: bool = False) -> None:
    """One line of plain text (styled parts as (text, style)): data is never read as Rich markup, and the
    line is never wrapped, so a message stays one line whatever the terminal's width."""
    (err_console if err else console).print(Text.assemble(*parts), soft_wrap=True)


def print_error(message: str) -> None:
    first, *rest = message.splitlines() or [""]
    print_line(("error: ", "bold red"), first, err=True)
    for line in rest:
        print_line(line, err=True)


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    print_error(message)
    raise typer.Exit(code=code)


def is_verbose(ctx: typer.Context | None) -> bool:
    if ctx is not None and isinstance(ctx.obj, dict) and "verbose" in ctx.obj:
        return bool(ctx.obj["verbose"])
    return os.environ.get("SEGFLOW_VERBOSE", "").lower() in ("1", "true", "yes")


def describe_failure(error: BaseException) -> tuple[int, str] | None:
    """The exit code and message of a failure the program knows; None for an unexpected one."""
    for cls in type(error).__mro__:
        if cls.__name__ in KNOWN_FAILURES:
            return KNOWN_FAILURES[cls.__name__], str(error)
    return None


def fail_usage(error: typer.TyperException) -> NoReturn:
    """A usage error (exit code 2) from parsing the options: one line, not Typer's panel."""
    if getattr(error, "exit_code", 1) != EXIT_USAGE or type(error).__name__ == "NoArgsIsHelpError":
        raise error
    failed_ctx = getattr(error, "ctx", None)
    command = f"segflow {failed_ctx.info_name}" if failed_ctx and failed_ctx.parent else "segflow"
    fail(f"{error.format_message()} (see `{command} --help`)", EXIT_USAGE)


class SegflowGroup(TyperGroup):
    """Turns every failure of a command into an `error:` line and an exit code. The traceback is printed only
    with --verbose."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.TyperException as error:
            fail_usage(error)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as error:
            fail_usage(error)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:  # `segflow segments | head -1`: the reader has what it wanted; say nothing
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit, when stdout flushes
            raise typer.Exit(code=EXIT_REFUSED) from None
        except Exception as error:
            verbose = is_verbose(ctx)
            if verbose:
                traceback.print_exception(error, file=sys.stderr)
            known = describe_failure(error)
            if known is not None:
                fail(known[1], known[0])
            summary = str(error).strip().splitlines()
            print_error(f"{type(error).__name__}: {summary[0] if summary else 'no message'}")
            if not verbose:
                print_line("run with --verbose for the traceback", err=True)
            raise typer.Exit(code=EXIT_REFUSED) from None


app = typer.Typer(
    cls=SegflowGroup,
    help=(
        "segflow: raw user-behaviour events in, user segments that recommenders can use out.\n\n"
        "Exit codes: 0 ok; 1 data refused or the command failed; 2 usage (a bad option, source or workspace). "
        "Each failure is one `error:` line; --verbose adds the traceback and the libraries' logs."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            envvar="SEGFLOW_VERBOSE",
            help="Print tracebacks and the libraries' logs (Prefect, Great Expectations, MLflow).",
        ),
    ] = False,
) -> None:
    """Options for every command."""
    ctx.obj = {"verbose": verbose}
    # What a command sets in the environment is its own: restored when it ends (matters when the app is
    # invoked in-process, as the tests do).
    saved = dict(os.environ)
    ctx.call_on_close(lambda: restore_environment(saved))
    if verbose:
        os.environ["SEGFLOW_VERBOSE"] = "1"
    else:
        warnings.filterwarnings("ignore")


def restore_environment(saved: dict[str, str]) -> None:
    """Put back what a command changed, touching nothing else (Prefect's threads may be reading it)."""
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def check_source(value: str | None) -> str | None:
    """A usage error for a source that cannot be right, before anything starts; a spec's paths must match
    files now. None (no --source): the workspace's own, found once the workspace is known (workspace_source)."""
    return None if value is None else source_problem(value, need_files=True)


def check_deploy_source(value: str | None) -> str | None:
    """check_source for a deployment, whose files may arrive later."""
    return None if value is None else source_problem(value, need_files=False)


def workspace_source(ctx: typer.Context, source: str | None, workspace: Path, need_files: bool = True) -> str:
    """The source a command reads: --source, or without it the one the workspace's warehouse was read from
    (kept in `sources.location`), so a retrain or a scoring of a MovieLens workspace never adds the demo shop to
    it; the demo in a workspace with no source yet. A usage error where the workspace holds several sources,
    or one ingested before segflow kept where it came from, as no guess is safe there."""
    if source is not None:
        return source
    import duckdb

    path = Workspace(workspace=workspace).warehouse_path
    hint = "name the one to read with --source (demo, movielens:DIR or PATH.toml)"
    if not path.is_file():
        return "demo"
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            try:
                rows = con.execute(
                    "select stored.source, sources.location from (select distinct source from events) as stored "
                    "left join sources on sources.name = stored.source order by 1"
                ).fetchall()
            except (duckdb.CatalogException, duckdb.BinderException):  # a warehouse from before locations
                rows = con.execute("select distinct source, null from events order by 1").fetchall()
    except duckdb.Error:
        raise typer.BadParameter(
            f"another process holds the warehouse {path}, so the source this workspace reads cannot be told: "
            f"{hint}, or run this again when it is done",
            ctx=ctx, param_hint="'--source' / '-s'",
        ) from None  # fmt: skip
    # A demo workspace from before locations were kept reads the demo, as it always did.
    rows = [(name, "demo" if location is None and name == "demo" else location) for name, location in rows]
    if not rows:
        return "demo"
    locations = {location for _, location in rows}
    if len(rows) == 1 and None not in locations:
        (location,) = locations
        try:
            source_problem(location, need_files)  # its files must still be there
        except typer.BadParameter as error:
            raise typer.BadParameter(
                f"no --source, and the source this workspace was read from cannot be read now: {error.message}; "
                f"{hint}", ctx=ctx, param_hint="'--source' / '-s'",
            ) from None  # fmt: skip
        print_line(("note: ", "yellow"), f"no --source: using this workspace's source, {location}")
        return location
    names = ", ".join(name for name, _ in rows)
    why = (
        f"this workspace holds the events of {len(rows)} sources ({names})"
        if len(rows) > 1
        else f"this workspace's source {names} was ingested before segflow kept where a source comes from"
    )
    raise typer.BadParameter(f"{why}: {hint}", ctx=ctx, param_hint="'--source' / '-s'")


def source_problem(value: str, need_files: bool) -> str:
    if value == "demo":
        return value
    kind, _, rest = value.partition(":")
    if kind == "demo":
        from tasks.ingest.demo import demo_config
        from tasks.ingest.sources import SourceSpecError

        if rest and not rest.partition(":")[0].isdigit() and rest != "titles":
            raise typer.BadParameter(f"{value!r}: demo:N needs a whole number of users, e.g. demo:300")
        try:
            demo_config(value)
        except SourceSpecError as error:
            raise typer.BadParameter(str(error)) from None
        return value
    if kind == "movielens" and rest:
        if need_files and not Path(rest).expanduser().is_dir():
            raise typer.BadParameter(f"{value!r}: {rest} is not a folder (the unzipped MovieLens data set)")
        if need_files:
            from tasks.ingest.sources import movielens_spec

            check_source_files(lambda: movielens_spec(Path(rest)))
        return value
    if value.endswith(".toml"):
        from tasks.ingest.sources import parse_source_spec

        check_source_files(lambda: parse_source_spec(Path(value)), need_files)
        return value
    raise typer.BadParameter(
        f"unknown source {value!r}: use demo, demo:N, demo:N:titles, movielens:DIR or PATH.toml"
    )


def check_source_files(read_spec: Callable[[], Any], need_files: bool = True) -> None:
    """A usage error, before a workspace is made, for a spec that cannot be read and (with `need_files`) for a
    path that matches no file or a file whose format cannot be told."""
    from tasks.ingest.files import discover_files
    from tasks.ingest.sources import SourceSpecError

    try:
        spec = read_spec()
        if need_files:
            discover_files(spec)
    except SourceSpecError as error:
        raise typer.BadParameter(str(error)) from None


def check_source_columns(ctx: typer.Context, source: str, workspace: Path) -> None:
    """A usage error, before the workspace is opened or made, for a spec expression that reads a column no file
    of its feed has (tasks/ingest/files.py check_file_columns). After the options are parsed, as it needs the
    workspace: files its warehouse has ingested do not count, as ingest skips them (and while another process
    holds the warehouse nothing is checked: ingest will tell)."""
    if not (source.endswith(".toml") or source.startswith("movielens:")):
        return
    from tasks.ingest.files import check_file_columns, ingested_contents
    from tasks.ingest.sources import SourceSpecError, movielens_spec, parse_source_spec

    try:
        if source.startswith("movielens:"):
            spec = movielens_spec(Path(source.partition(":")[2]))
        else:
            spec = parse_source_spec(Path(source))
        notes = check_file_columns(spec, ingested_contents(Workspace(workspace=workspace).warehouse_path))
    except SourceSpecError as error:
        raise typer.BadParameter(str(error), ctx=ctx, param_hint="'--source' / '-s'") from None
    for note in notes:
        print_line(("note: ", "yellow"), note)


def check_n(value: int) -> int:
    if value < 1:
        raise typer.BadParameter(f"{value}: ask for at least 1 recommendation")
    return value


def as_ingested_id(value: str) -> str:
    """A user id as ingest stores it: trimmed (`' 7'` in a file is user `7`)."""
    return value.strip()


def check_k(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) >= 2):
        return value
    raise typer.BadParameter(f"{value!r}: use auto or a whole number of segments, at least 2")


def check_micro_k(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) >= 2):
        return value
    raise typer.BadParameter(f"{value!r}: use auto or a whole number of micro-segments, at least 2")


def check_personal_weight(value: str) -> str:
    try:
        if value == "auto" or 0 <= float(value) <= 1:
            return value
    except ValueError:
        pass
    raise typer.BadParameter(f"{value!r}: use auto or a number from 0 to 1")


WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace", "-w", envvar="SEGFLOW_WORKSPACE", help="Folder that holds everything a run writes."
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        "-s",
        callback=check_source,
        help="demo, demo:N_USERS, demo:N_USERS:titles (no categories), movielens:DIR, or PATH.toml (a source "
        "spec). Default: the source the workspace was read from; demo for a new workspace.",
        show_default=False,
    ),
]
DeploySourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        "-s",
        callback=check_deploy_source,
        help="demo, demo:N_USERS, demo:N_USERS:titles, movielens:DIR, or PATH.toml (its files may arrive "
        "later). Default: the source the workspace was read from; demo for a new workspace.",
        show_default=False,
    ),
]
MaxBadOption = Annotated[
    float,
    typer.Option(
        "--max-bad-fraction", help="Reject a file whose share of bad rows is above this.", min=0, max=1
    ),
]
DetailsOption = Annotated[
    bool, typer.Option("--details", help="Print every file's row in the ingest table, however many.")
]


def prepare_writer(
    ctx: typer.Context, workspace: Path, must_exist: bool = False
) -> tuple[Workspace, PrefectServer | None]:
    """Open (or create) the workspace, hold its writer lock for the whole command (a second writer is told
    at once, before anything starts), set the environment and start the Prefect server the flows will use
    (None when one is given or already in use)."""
    ws = find_workspace(workspace) if must_exist else open_workspace(workspace)
    ctx.with_resource(hold_workspace(ws))
    configure_environment(ws, verbose=is_verbose(ctx))
    # A server given by PREFECT_API_URL, or a process that already imported Prefect (a test harness), is
    # used as it is. Otherwise this command starts its own, which dies with it even on SIGKILL; Prefect's
    # own temporary server would outlive a killed command.
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:
        return ws, None
    from tasks.servers import find_running_server

    running = find_running_server(ws)  # `segflow ui` or `segflow server start` on this workspace
    if running is not None:
        os.environ["PREFECT_API_URL"] = running
        return ws, None
    server = start_prefect_server(ws)
    os.environ["PREFECT_API_URL"] = server.api_url
    if is_verbose(ctx):
        print_line(
            f"Prefect API {server.api_url}: a local server for this command, log {server.log_path}", err=True
        )
    return ws, server


def wait_for_prefect(server: PrefectServer | None) -> None:
    if server is not None:
        server.wait_until_ready(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 90)))


class ProgressHandler(logging.Handler):
    """Moves the progress bar on each `segflow.progress` record (one per ingested file)."""

    def __init__(self, progress: Progress, task: TaskID, after_ingest: str | None) -> None:
        super().__init__(logging.INFO)
        self.progress, self.task, self.after_ingest = progress, task, after_ingest

    def emit(self, record: logging.LogRecord) -> None:
        try:
            done, total = int(record.file_index), int(record.n_files)  # type: ignore[attr-defined]
            rows = int(getattr(record, "rows_read_total", 0) or 0)
        except (AttributeError, TypeError, ValueError):
            return  # a record without the contract's fields: nothing to show
        self.progress.update(
            self.task, total=total, completed=done, files=f"file {done:,} of {total:,}", rows=f"{rows:,} rows"
        )
        if done >= total and self.after_ingest:
            self.progress.update(self.task, description=self.after_ingest, total=None, files="", rows="")


@contextmanager
def show_progress(description: str, after_ingest: str | None = None) -> Iterator[None]:
    """A progress bar on the terminal (file n of N, rows so far) while an ingest runs; nothing is left
    behind, and nothing is drawn when the output is not a terminal."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[files]}", markup=False),
        TextColumn("{task.fields[rows]}", markup=False),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    if not err_console.is_terminal:  # a log or a pipe gets the summary only
        yield
        return
    task = progress.add_task(description, total=None, files="", rows="")
    logger = logging.getLogger(PROGRESS_LOGGER)
    handler = ProgressHandler(progress, task, after_ingest)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the records are for the bar, not for the console's log lines
    logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def cell(value: object) -> Text:
    """A table cell that shows data as it is: `[events]` or `coffee [/] tea` are text, not markup."""
    return Text("" if value is None else str(value))


def files_count(n: int) -> str:
    return f"{n:,} file" if n == 1 else f"{n:,} files"


def print_ingest(report: Any, details: bool = False) -> None:
    """The per-file table when there are few files (or with --details), then one summary: counts by status,
    row totals, and each refused file on its own line."""
    files = report.files
    # Rows a feed's `unnest` added (read + unnested = the rest) and its `where` did not keep: a column and a
    # count only where a spec has them.
    unnested = ("unnested",) if any(f.rows_unnested for f in files) else ()
    filtered = ("filtered",) if any(f.rows_filtered for f in files) else ()
    numbers = ("read", *unnested, "inserted", "duplicate", "quarantined", *filtered)
    if details or len(files) <= MAX_FILES_IN_TABLE:
        table = Table(title=Text(f"ingest of {report.source}"), title_justify="left")
        for column in ("file", "kind", "status", *numbers):
            # A narrow console (80 columns when piped) wraps a file's name: cut, `ratings.c…` named none.
            if column in numbers:
                table.add_column(column, justify="right")
            else:
                table.add_column(column, overflow="fold")
        for f in files:
            style = {"rejected": "red", "failed_validation": "red", "skipped": "dim"}.get(f.status, "")
            table.add_row(
                cell(Path(f.file).name), cell(f.kind), cell(f.status),
                *(cell(f"{getattr(f, f'rows_{name}'):,}") for name in numbers), style=style,
            )  # fmt: skip
        console.print(table)
    status = Counter(f.status for f in files)
    rows = {name: sum(getattr(f, f"rows_{name}") for f in files) for name in numbers}
    print_line(
        f"ingest of {report.source}: {files_count(len(files))}: {status['ingested']:,} ingested, "
        f"{status['skipped']:,} skipped, {status['rejected']:,} rejected, "
        f"{status['failed_validation']:,} failed validation; rows: "
        + ", ".join(f"{n:,} {name}" for name, n in rows.items())
        + kinds_read(files)
    )
    for f in files:
        if f.status in ("rejected", "failed_validation"):
            message = f.message or Path(f.file).name
            first, *rest = message.splitlines() or [""]
            print_line((f"{f.status} ", "red"), first)
            for line in rest:
                print_line(line)
    warned = [(Path(f.file).name, w) for f in files for w in f.warnings]
    shown = warned if details else warned[:MAX_WARNING_LINES]
    for name, warning in shown:
        print_line(("warning ", "yellow"), f"{name}: {warning}")
    if len(warned) > len(shown):
        print_line(
            f"... and {len(warned) - len(shown):,} more warnings: see the validation reports, or use --details"
        )


def print_warehouse(ws: Workspace) -> None:
    import duckdb

    from tasks.warehouse import describe_warehouse

    try:
        counts = describe_warehouse(ws.warehouse_path)
    except duckdb.Error:
        return  # another process has it now; the counts are a courtesy, not the result
    print_line(
        "warehouse ", (str(ws.warehouse_path), "bold"),
        f": {counts['events']:,} events from {counts['users']:,} users on {counts['items']:,} items"
        + (f" (the catalogue lists {counts['catalogue']:,})" if counts["catalogue"] != counts["items"] else "")
        + f"; {counts['quarantine']:,} rows in quarantine",
    )  # fmt: skip
    if len(counts["sources"]) > 1:
        print_line(
            ("note: ", "yellow"),
            f"the warehouse holds the events of {len(counts['sources'])} sources ({', '.join(counts['sources'])}): "
            "segments are built from all of them; use one workspace per data set to keep them apart",
        )


def kinds_read(files: list) -> str:
    """Where a source has catalogue files beside event files, how the rows read split between them: the
    warehouse line after the summary counts events only."""
    read = Counter()
    for f in files:
        read[f.kind] += f.rows_read
    if len(read) < 2:
        return ""
    return " (" + ", ".join(f"{n:,} {kind}" for kind, n in sorted(read.items())) + " read)"


def refuse_ingest(error: Exception, published_note: str | None = None) -> NoReturn:
    """An ingest that refused files: the summary (each refused file on its line), then the error line."""
    report = getattr(error, "report", None)
    if report is None:
        fail(str(error) + (f"\n{published_note}" if published_note else ""))
    print_ingest(report)
    fail(refused_message(report) + (f"\n{published_note}" if published_note else ""))


def refused_message(report: Any) -> str:
    refused = sum(f.status in ("rejected", "failed_validation") for f in report.files)
    return (
        f"{refused:,} of {files_count(len(report.files))} refused, nothing of them inserted. Every ingest reads "
        "a refused file again until it is fixed or moved out of the source's folder: for a rejected one, "
        "--max-bad-fraction lets its good rows in (the bad ones quarantined); for a failed one, see its "
        "validation report ([validation] in the spec sets the checks)"
    )


@app.command()
def ingest(
    ctx: typer.Context,
    source: SourceOption = None,
    workspace: WorkspaceOption = Path("workspace"),
    max_bad_fraction: MaxBadOption = 0.05,
    details: DetailsOption = False,
) -> None:
    """Ingest a source's event files into the workspace's DuckDB warehouse (idempotent)."""
    source = workspace_source(ctx, source, workspace)
    check_source_columns(ctx, source, workspace)
    ws, server = prepare_writer(ctx, workspace)
    from flows.ingest import ingest_events
    from tasks.ingest.files import IngestFailedError

    wait_for_prefect(server)
    try:
        with show_progress(f"ingesting {source}"):
            report = ingest_events(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction)
    except IngestFailedError as error:
        refuse_ingest(error)
    print_ingest(report, details)
    print_warehouse(ws)


def parse_segment_settings(
    embedding: str,
    clusterer: str,
    k: str,
    seed: int,
    micro_k: str = "auto",
    min_segment_size: int | None = None,
    require_lift: bool = False,
    **training: Any,
) -> Any:
    """SegmentSettings from the options; a bad value is a usage error naming the option."""
    from pydantic import ValidationError

    from tasks.segment.settings import SegmentSettings

    try:
        return SegmentSettings(
            embedding=embedding, clusterer=clusterer, k=k if k == "auto" else int(k), seed=seed,
            micro_k=micro_k if micro_k == "auto" else int(micro_k), min_segment_size=min_segment_size,
            require_lift=require_lift, **training,
        )  # fmt: skip
    except ValidationError as error:
        first = error.errors()[0]
        field = (
            str(first["loc"][0]).removesuffix("_s") if first["loc"] else None
        )  # time_budget_s: --time-budget
        option = f"'--{field.replace('_', '-')}'" if field else "a segment setting"
        message = first["msg"].removeprefix("Value error, ")
        said = repr(first["input"]) in message  # `unknown time zone 'Europe/Berln'`: not said twice
        raise typer.BadParameter(
            message if said else f"{first['input']!r}: {message}", param_hint=option
        ) from None


@app.command()
def run(
    ctx: typer.Context,
    source: SourceOption = None,
    workspace: WorkspaceOption = Path("workspace"),
    max_bad_fraction: MaxBadOption = 0.05,
    embedding: Annotated[
        str,
        typer.Option(
            help="auto (train the families the data support and publish the best on the holdout), one family, "
            "or several separated by commas: behaviour, svd, combined, autoencoder, lightgcn, sequence, text, "
            "fusion."
        ),
    ] = "auto",
    clusterer: Annotated[str, typer.Option(help="kmeans, hdbscan, agglomerative or dec.")] = "kmeans",
    k: Annotated[
        str, typer.Option("--k", callback=check_k, help="Number of segments (2 or more), or auto.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    micro_k: Annotated[
        str,
        typer.Option(
            "--micro-k",
            callback=check_micro_k,
            help="Number of micro-segments for recommenders (2 or more), or auto: chosen by usefulness.",
        ),
    ] = "auto",
    personal_weight: Annotated[
        str,
        typer.Option(
            "--personal-weight",
            callback=check_personal_weight,
            help="How much each user's own taste reorders their ready list, 0 (the micro-segments' lists "
            "alone) to 1, or auto: chosen by usefulness with the micro-segments.",
        ),
    ] = "auto",
    min_segment_size: Annotated[
        int | None,
        typer.Option(
            "--min-segment-size",
            min=1,
            help="Smallest published segment; smaller ones merge into their nearest. Default max(20, 1%).",
        ),
    ] = None,
    require_lift: Annotated[
        bool,
        typer.Option(
            "--require-lift", help="Refuse to publish lists that are not more useful than popularity."
        ),
    ] = False,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="The users' clock for day parts and weekends, an IANA time zone (America/New_York), for "
            "events without a zone of their own. Default: the source spec's timezone, else UTC. Like the "
            "other settings, for this run only.",
        ),
    ] = None,
    max_epochs: Annotated[
        int | None, typer.Option("--max-epochs", help="Most epochs per learned family fit (and DEC's).")
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="A wall-clock cap in seconds per learned family fit and DEC fit (default: none; a fit is bounded by its "
            "epochs, and a cap that stops one makes its vectors depend on the machine's speed).",
        ),
    ] = None,
    accelerator: Annotated[
        str, typer.Option(help="Where learned families and DEC train: auto (a GPU when present), cpu or gpu.")
    ] = "auto",
    engine: Annotated[
        str, typer.Option(help="Where the feature SQL runs: duckdb (in this process) or spark.")
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="With --engine spark: local[*], spark://host:7077 or sc://host:15002 (Spark Connect). "
            "Default: env SPARK_REMOTE, else local[*].",
        ),
    ] = None,
    devices: Annotated[
        int,
        typer.Option(
            "--devices", help="Processes (cpu) or GPUs per machine a learned family trains on; 2+: DDP."
        ),
    ] = 1,
    num_nodes: Annotated[
        int, typer.Option("--num-nodes", help="Machines a learned family trains on together (DDP).")
    ] = 1,
    task_runner: Annotated[
        str,
        typer.Option(
            "--task-runner",
            help="thread (tasks one after another, in this process), dask or ray (independent tasks in "
            "parallel on a cluster: a local one, or the one at --cluster-address).",
        ),
    ] = "thread",
    cluster_address: Annotated[
        str | None,
        typer.Option(
            "--cluster-address", help="A Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Publish and become champion even when the champion scores better on this holdout.",
        ),
    ] = False,
    details: DetailsOption = False,
) -> None:
    """Run the whole pipeline on a source: ingest, validate, features, embed, cluster, evaluate, publish."""
    # Checked before anything starts (the settings name the families without importing them: 1 s, not 10):
    # a bad value is told at once and leaves no workspace behind.
    settings = parse_segment_settings(
        embedding, clusterer, k, seed, micro_k, min_segment_size, require_lift,
        max_epochs=max_epochs, time_budget_s=time_budget, accelerator=accelerator, force=force,
        personal_weight=personal_weight if personal_weight == "auto" else float(personal_weight),
        engine=engine, spark_master=spark_master, timezone=timezone,
        devices=devices, num_nodes=num_nodes, task_runner=task_runner, cluster_address=cluster_address,
    )  # fmt: skip
    source = workspace_source(ctx, source, workspace)
    check_source_columns(ctx, source, workspace)
    ws, server = prepare_writer(ctx, workspace)
    from flows.segment_users import segment_users_with_runner  # the model code, while the server boots

    wait_for_prefect(server)
    try:
        with show_progress(
            f"ingesting {source}",
            after_ingest="segmenting users: features, embed, cluster, evaluate, publish",
        ):
            summary = segment_users_with_runner(settings)(
                source=source, workspace=str(ws.root), settings=settings, max_bad_fraction=max_bad_fraction
            )
    except Exception as error:
        known = describe_failure(error)
        if known is None or known[0] != EXIT_REFUSED:
            raise
        if hasattr(error, "report"):
            refuse_ingest(error, NOT_PUBLISHED)
        fail(str(error) if type(error).__name__ == "ExportSwitchError" else f"{error}\n{NOT_PUBLISHED}")
    print_ingest(summary.ingest, details)
    print_warehouse(ws)
    print_segments(
        summary.profiles,
        "segments" if summary.published else "segments of this run: NOT published (the champion's stay)",
    )
    print_metrics(summary.metrics)
    print_families(summary.families)
    for note in summary.notes:
        print_line(("note: ", "yellow"), note)
    for name, where in summary.locations.items():
        print_line((name, "bold"), f": {where}")


def print_families(families: list[dict]) -> None:
    """The embedding families the run compared (segments fit on the training part, scored on the holdout)."""
    if len(families) < 2:
        return
    table = Table(title="embedding families (segment lists on the holdout)", title_justify="left")
    for column in ("family", "Recall@10", "silhouette", "fit s", "choice"):
        table.add_column(column, justify="left" if column in ("family", "choice") else "right")
    from tasks.track.report import choice, figure

    for f in families:
        table.add_row(
            cell(f["family"]), cell(figure(f["recall@10"], 4)), cell(figure(f["silhouette"], 3)),
            cell(figure(f["fit_seconds"], 1)), cell(choice(f)),
        )  # fmt: skip
    console.print(table)


def print_segments(profiles: list[dict], title: str = "segments") -> None:
    """The segments table; its last column is the top categories, or the top items where items have none."""
    by_items = not any(p["top_categories"] for p in profiles) and any(p.get("top_items") for p in profiles)
    table = Table(title=title, title_justify="left")
    for column in ("id", "label", "users", "share", "top items" if by_items else "top categories"):
        table.add_column(column, justify="right" if column in ("id", "users", "share") else "left")
    for p in profiles:
        table.add_row(
            cell(p["segment_id"]),
            cell(p["label"]),
            cell(f"{p['size']:,}"),
            cell(f"{p['share']:.1%}"),
            cell(", ".join((p.get("top_items") or [])[:3] if by_items else p["top_categories"] or [])),
        )
    console.print(table)


def print_metrics(metrics: dict[str, float]) -> None:
    from tasks.track.report import headline_metrics

    table = Table(
        title="how good the segments are",
        title_justify="left",
        caption="Recall, NDCG, lift: fit on the training part, scored on held-out items. The rest: the published "
        "fit on all users; variance and distances are in its embedding's units (not comparable across runs).",
        caption_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in headline_metrics(metrics):
        table.add_row(cell(label), cell(value))
    console.print(table)  # without a holdout the run's notes say usefulness was not measured


def find_published(workspace: Path) -> tuple[Workspace, Any]:
    """The workspace (never created) and its published snapshot, resolved once for the whole command."""
    from tasks.serve import find_snapshot

    ws = find_workspace(workspace)
    snapshot = find_snapshot(ws.exports_dir)
    if snapshot is None:
        fail(f"no segments published in {ws.root} yet: run `segflow run --workspace {ws.root}` first")
    return ws, snapshot


@app.command()
def segments(workspace: WorkspaceOption = Path("workspace")) -> None:
    """Print the current segments (from the published snapshot: never waits for a run in progress)."""
    from tasks.serve import (
        look_into_warehouse,
        read_export_run,
        read_profiles,
        read_published_run,
        read_segment_run,
    )

    ws, snapshot = find_published(workspace)
    profiles = read_profiles(snapshot)
    published = read_published_run(snapshot)
    run_made = read_export_run(snapshot)
    if run_made is None:  # a snapshot from before the run was exported with it
        with look_into_warehouse(ws) as look:
            run_made = read_segment_run(look, published["run_id"])
    if run_made is not None:
        print_line(
            f"run {run_made['run_id']} ({run_made['created_at']:%Y-%m-%d %H:%M}) on {run_made['source']}: "
            f"{run_made['embedding']} + {run_made['clusterer']}, K = {run_made['k']}"
        )
    else:
        print_line(
            f"run {published['run_id']} (published {published['assigned_at']:%Y-%m-%d %H:%M}): "
            f"{published['n_users']:,} users, K = {published['k']}"
        )
    print_segments(profiles)
    n_sized = sum(p["size"] for p in profiles)
    if published["n_users"] > n_sized:  # scorings since the run: their users are in no size above
        print_line(
            ("note: ", "yellow"),
            f"users and shares are the run's ({n_sized:,} users); {published['n_users'] - n_sized:,} more were "
            "assigned since by `segflow score` (`segflow user USER_ID` shows each)",
        )


@app.command()
def user(
    user_id: Annotated[
        str, typer.Argument(callback=as_ingested_id, help="The user's id, as in events.user_id.")
    ],
    workspace: WorkspaceOption = Path("workspace"),
    n: Annotated[int, typer.Option("-n", callback=check_n, help="How many recommendations.")] = 10,
) -> None:
    """Print a user's segment and its label, their micro-segments and their top recommendations (items they
    have seen excluded), from the published snapshot: never waits for a run in progress. A user with events
    who is not in the snapshot is assigned now by the run's saved segmenter (and told so)."""
    from tasks.serve import read_user_segment

    ws, snapshot = find_published(workspace)
    found = read_user_segment(snapshot, user_id)
    if found is None:
        show_unpublished_user(ws, snapshot, user_id, n)
    elif snapshot.has("user_recommendations"):
        show_published_user(ws, snapshot, user_id, found, n)
    else:
        show_segment_list_user(ws, snapshot, user_id, found, n)


def show_published_user(ws: Workspace, snapshot: Any, user_id: str, found: dict, n: int) -> None:
    """A user in the snapshot: their segment, memberships and ready blended list, all as published."""
    from tasks.serve import describe_memberships, read_user_list, read_user_memberships

    memberships = read_user_memberships(snapshot, user_id) or []
    print_line("user ", (user_id, "bold"), f" is in segment {found['segment_id']}: {found['label']}")
    print_placement(found.get("placed_by"), found["distance"])
    print_memberships(describe_memberships(snapshot, memberships) if memberships else [])
    listed = read_user_list(snapshot, user_id, n) or []
    titles, note = item_titles(ws, snapshot, [row["item_id"] for row in listed])
    if note:
        print_line(("note: ", "yellow"), f"{note}, so titles are not shown; ask again when it is done")
    held = f"; the published list holds {len(listed)}, not {n}" if len(listed) < n else ""
    print_recommendations(
        f"top {len(listed)} recommendations ({list_origin(snapshot)}, seen items excluded{held})",
        listed,
        titles,
    )


def print_placement(placed_by: str | None, distance: float | None) -> None:
    """A note for a user placed otherwise than by the nearest segment centre (tasks/segment/reach.py)."""
    from tasks.segment.reach import placement_note

    note = placement_note(placed_by, distance or 0.0)
    if note:
        print_line(("note: ", "yellow"), note)


def list_origin(snapshot: Any) -> str:
    """How the run made its per-user lists: the micro-segments' items, scored `(1 - a) x their blend + a x
    the user's own taste` (a: the run's personal weight)."""
    from tasks.serve import read_export_run

    weight = (read_export_run(snapshot) or {}).get("personal_weight")
    if not weight:  # 0, or a snapshot that does not say
        return "blended from the micro-segments"
    if weight >= 1:
        return "the micro-segments' items, ordered by the user's own taste"
    return (
        f"the micro-segments' items, ordered by their blend and, at weight {weight:g}, the user's own taste"
    )


def show_unpublished_user(ws: Workspace, snapshot: Any, user_id: str, n: int) -> None:
    """A user the snapshot does not hold: assigned now from their events by the run's saved segmenter, or an
    error when they have no events (or the warehouse cannot be read now)."""
    from tasks.serve import (
        assign_now,
        describe_memberships,
        look_into_warehouse,
        read_latest_event_time,
        read_profiles,
        read_published_run,
        read_quarantined_reasons,
        read_recommendations,
        read_user_events,
    )

    with look_into_warehouse(ws) as look:
        events, as_of = read_user_events(look, user_id), read_latest_event_time(look)
        quarantined = (
            read_quarantined_reasons(look, user_id) if events is not None and events.num_rows == 0 else []
        )
    if events is None:
        fail(
            f"user {user_id!r} is not in the published segments, and {look.unavailable}, so their events cannot "
            "be read to assign them now; ask again when it is done"
        )
    if events.num_rows == 0:
        rows = ""
        if quarantined:  # what the operator has to fix (helper 38: such a user read as unknown)
            n = sum(count for _, count in quarantined)
            reasons = "; ".join(f"{reason} ({count:,})" for reason, count in quarantined[:3])
            more = f"; and {len(quarantined) - 3} more reasons" if len(quarantined) > 3 else ""
            held = f"{'row holds' if n == 1 else 'rows hold'} {user_id!r} as a value"
            rows = f", but {n:,} quarantined {held} ({reasons}{more}): fix them if they are theirs"
        fail(
            f"user {user_id!r} has no segment: they have no events in {ws.root}{rows}; the global list applies to them (segment_recommendations where segment_id = -1)"
        )
    from tasks.segment.evaluate import USER_LIST_LENGTH

    run_id = read_published_run(snapshot)["run_id"]
    live = assign_now(snapshot, events, min(n, USER_LIST_LENGTH), as_of)  # as long as a published list
    if live is None:
        fail(
            f"user {user_id!r} is not in the published segments, and run {run_id} saved no segmenter to assign "
            f"them now: run `segflow run --workspace {ws.root}` to publish segments for them"
        )
    labels = {p["segment_id"]: p["label"] for p in read_profiles(snapshot)}
    label = labels.get(live.segment_id, "no segment (noise)" if live.segment_id < 0 else "")
    print_line("user ", (user_id, "bold"), f" is in segment {live.segment_id}: {label}")
    print_placement(live.placed_by, live.distance)
    print_line(("note: ", "yellow"), f"assigned now by the saved segmenter of run {run_id}; not published")
    seen = sorted(set(events.column("item_id").to_pylist()))
    if live.memberships and snapshot.has("micro_segment_recommendations"):
        print_memberships(describe_memberships(snapshot, live.memberships))
        listed = live.recommendations
        held = f"; a published list holds {USER_LIST_LENGTH}, not {n}" if n > USER_LIST_LENGTH else ""
        title = f"top {len(listed)} recommendations ({list_origin(snapshot)}, seen items excluded{held})"
    else:
        listed = read_recommendations(snapshot, live.segment_id, n, seen)
        title = f"top {n} recommendations (seen items excluded)"
    titles, note = item_titles(ws, snapshot, [row["item_id"] for row in listed])
    if note:
        print_line(("note: ", "yellow"), f"{note}, so titles are not shown; ask again when it is done")
    print_recommendations(title, listed, titles)


def show_segment_list_user(ws: Workspace, snapshot: Any, user_id: str, found: dict, n: int) -> None:
    """A user of a snapshot published before the micro level: their segment's list, seen items excluded when
    the warehouse can be read now."""
    from tasks.serve import look_into_warehouse, read_item_titles, read_recommendations, read_seen_items

    with look_into_warehouse(ws) as look:
        seen = read_seen_items(look, user_id)
        recommendations = read_recommendations(snapshot, found["segment_id"], n, seen or ())
        titles = read_item_titles(look, [r["item_id"] for r in recommendations])
    print_line("user ", (user_id, "bold"), f" is in segment {found['segment_id']}: {found['label']}")
    if seen is None:
        print_line(
            ("note: ", "yellow"),
            f"{look.unavailable}, so items the user has seen are not excluded and titles are not shown; "
            "ask again when it is done",
        )
    title = f"top {n} recommendations" + (" (seen items excluded)" if seen is not None else "")
    print_recommendations(title, recommendations, titles)


def item_titles(
    ws: Workspace, snapshot: Any, item_ids: list[str]
) -> tuple[dict[str, str | None], str | None]:
    """Titles from the snapshot, or (older snapshots) from the warehouse when no writer has it; with why not."""
    from tasks.serve import look_into_warehouse, read_export_titles, read_item_titles

    titles = read_export_titles(snapshot, item_ids)
    if titles is not None:
        return titles, None
    with look_into_warehouse(ws) as look:
        return read_item_titles(look, item_ids), look.unavailable


def print_memberships(memberships: list[dict]) -> None:
    print_line("micro-segments (for recommenders)")
    table = Table()
    by_category = any(m["top_categories"] for m in memberships)  # items without categories: no empty column
    for column in (
        "micro-segment",
        "weight",
        "users",
        "in segment",
        *(("top categories",) if by_category else ()),
    ):
        table.add_column(column, justify="left" if column == "top categories" else "right")
    for m in memberships:
        table.add_row(
            cell(m["micro_segment_id"]),
            cell(f"{m['weight']:.2f}"),
            cell(f"{m['size']:,}" if m["size"] is not None else ""),
            cell(m["segment_id"]),
            *((cell(", ".join(m["top_categories"] or [])),) if by_category else ()),
        )
    console.print(table)


def print_recommendations(title: str, rows: list[dict], titles: dict[str, str | None]) -> None:
    print_line(title)  # a line, not the table's title: a narrow table would wrap it
    table = Table()
    for column in ("rank", "item", "title", "score"):
        table.add_column(column)
    for i, row in enumerate(rows, start=1):
        table.add_row(
            cell(i), cell(row["item_id"]), cell(titles.get(row["item_id"])), cell(f"{row['score']:.3f}")
        )
    console.print(table)


@app.command()
def score(
    ctx: typer.Context,
    source: SourceOption = None,
    workspace: WorkspaceOption = Path("workspace"),
    max_bad_fraction: MaxBadOption = 0.05,
    details: DetailsOption = False,
) -> None:
    """Ingest new files, then give every user with new events (and every new user) a segment with the
    published run's saved segmenter, without retraining. Users without new events are not touched."""
    source = workspace_source(ctx, source, workspace)
    check_source_columns(ctx, source, workspace)
    ws, server = prepare_writer(ctx, workspace, must_exist=True)
    from flows.score_users import RefusedFilesError, score_users
    from tasks.ingest.files import IngestFailedError

    wait_for_prefect(server)
    try:
        with show_progress(f"ingesting {source}", after_ingest="scoring users with new events"):
            summary = score_users(source=source, workspace=str(ws.root), max_bad_fraction=max_bad_fraction)
    except RefusedFilesError as error:  # the users of the files that went in were scored
        print_scoring(ws, error.summary, details)
        scored = (
            "The users of the files ingested were scored (above)"
            if error.summary.counts.n_scored
            else "Nobody had events to score"
        )
        fail(f"{refused_message(error.report)}\n{scored}; the refused files' events are not in yet.")
    except IngestFailedError as error:
        refuse_ingest(error, "Nobody was scored; the published segments are unchanged.")
    print_scoring(ws, summary, details)


def print_scoring(ws: Workspace, summary: Any, details: bool) -> None:
    """What `segflow score` prints of a scoring: the ingest, notes, how many users were scored and where."""
    print_ingest(summary.ingest, details)
    for note in summary.notes:
        print_line(("note: ", "yellow"), note)
    counts = summary.counts
    if counts.n_scored == 0:
        print_line(f"no user has events since the last publish: nothing scored (run {summary.run_id})")
        return
    print_line(
        f"scored {counts.n_scored:,} {'user' if counts.n_scored == 1 else 'users'} with the saved segmenter of "
        f"run {summary.run_id}: {counts.n_new:,} new, {counts.n_moved:,} moved to another segment"
    )
    from tasks.segment.reach import scored_placement_note

    placement = scored_placement_note(dict(counts.by_placement))
    if placement:
        print_line(("note: ", "yellow"), placement)
    from tasks.serve import find_snapshot, read_profiles

    labels = {p["segment_id"]: p["label"] for p in read_profiles(find_snapshot(ws.exports_dir))}
    table = Table(title="scored users by segment", title_justify="left")
    for column in ("id", "label", "scored"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for segment_id, n_users in counts.by_segment:
        table.add_row(cell(segment_id), cell(labels.get(segment_id, "")), cell(f"{n_users:,}"))
    console.print(table)
    print_line(("exports", "bold"), f": {summary.exports}")


@app.command()
def history(
    user_id: Annotated[
        str, typer.Argument(callback=as_ingested_id, help="The user's id, as in events.user_id.")
    ],
    workspace: WorkspaceOption = Path("workspace"),
) -> None:
    """Print a user's segments over time (every publish and every scoring that moved them), oldest first."""
    from tasks.serve import look_into_warehouse, read_run_labels, read_user_history

    ws, snapshot = find_published(workspace)
    with look_into_warehouse(ws) as look:
        spells = read_user_history(look, user_id)
    if spells is None:
        fail(f"the history is kept in the warehouse, and {look.unavailable}; ask again when it is done")
    if not spells:
        fail(f"user {user_id!r} has no segment history in {ws.root}")
    labels: dict[str, dict[int, str]] = {}  # run -> segment -> label, from its exports while they are kept

    def label(run_id: str, segment_id: int) -> str:
        if run_id not in labels:
            labels[run_id] = read_run_labels(ws.exports_dir, run_id)
        return labels[run_id].get(segment_id, "")

    print_line(
        "user ",
        (user_id, "bold"),
        f": {len(spells):,} {'spell' if len(spells) == 1 else 'spells'} in segments, oldest first",
    )
    table = Table()
    for column in ("from", "to", "segment", "label", "run"):
        table.add_column(column)
    for spell in spells:
        table.add_row(
            cell(f"{spell['valid_from']:%Y-%m-%d %H:%M}"),
            cell(f"{spell['valid_to']:%Y-%m-%d %H:%M}" if spell["valid_to"] else "now"),
            cell(spell["segment_id"]),
            cell(label(spell["run_id"], spell["segment_id"])),
            cell(spell["run_id"]),
        )
    console.print(table)


@app.command()
def deploy(
    ctx: typer.Context,
    workspace: WorkspaceOption = Path("workspace"),
    source: DeploySourceOption = None,
) -> None:
    """Create (or update) the `process` work pool `segflow` and the deployments segment-users/daily (03:00 UTC)
    and score-users/hourly on the Prefect server at PREFECT_API_URL (else the one `segflow server start` runs
    for this workspace, else the default 127.0.0.1:4200), with this workspace and source as their parameters'
    defaults. Run them with `prefect worker start --pool segflow`."""
    from tasks.deploy import (
        DEFAULT_API_URL,
        apply_deployments,
        ensure_work_pool,
        read_deployments,
        server_answers,
    )
    from tasks.servers import find_running_server

    # The server `segflow server start` runs for this workspace, on whatever port it was given: deploy went to
    # the default port and found none (or another workspace's).
    api_url = (
        os.environ.get("PREFECT_API_URL")
        or find_running_server(Workspace(workspace=workspace))
        or DEFAULT_API_URL
    )
    if not server_answers(api_url):
        fail(
            f"no Prefect server answers at {api_url}: start one with `prefect server start --host 127.0.0.1` "
            f"(it serves {DEFAULT_API_URL}) and leave it running, or set PREFECT_API_URL to yours; then run "
            "this again"
        )
    source = workspace_source(ctx, source, workspace, need_files=False)
    ws = open_workspace(workspace)
    configure_environment(ws, verbose=is_verbose(ctx))
    with err_console.status(f"deploying to {api_url} ..."):
        created = ensure_work_pool(api_url)
        before = {d["parameters"].get("workspace") for d in read_deployments(api_url)} - {None, str(ws.root)}
        apply_deployments(api_url, ws.root, source, ws.prefect_home)
        deployments = read_deployments(api_url)
    print_line(f"work pool segflow ({'created' if created else 'already there'}) on {api_url}")
    table = Table(title="deployments", title_justify="left")
    for column in ("deployment", "schedule (UTC)", "source", "workspace"):
        table.add_column(column)
    for d in deployments:
        table.add_row(
            cell(d["name"]), cell(", ".join(c for c in d["crons"] if c)), cell(d["parameters"].get("source")),
            cell(d["parameters"].get("workspace")),
        )  # fmt: skip
    console.print(table)
    if before:  # the deployments have one name per server: deploying re-points them
        print_line(
            f"note: the deployments ran on {', '.join(sorted(before))} until now; they run on {ws.root}. A "
            "server schedules one workspace: give another workspace a server of its own (PREFECT_API_URL)"
        )
    print_line(f"run them with: PREFECT_API_URL={api_url} prefect worker start --pool segflow")


server_app = typer.Typer(
    cls=SegflowGroup, help="The Prefect server of a workspace.", no_args_is_help=True, add_completion=False
)
app.add_typer(server_app, name="server")
PrefectPortOption = Annotated[
    int, typer.Option("--port", min=1, max=65535, help="Port of the Prefect server.")
]


@server_app.command("start")
def server_start(
    ctx: typer.Context, workspace: WorkspaceOption = Path("workspace"), port: PrefectPortOption = 4200
) -> None:
    """Start the workspace's Prefect server (API and UI) on 127.0.0.1 and keep it running until Ctrl-C; every
    segflow command on this workspace uses it meanwhile instead of starting its own."""
    serve_until_interrupted(ctx, workspace, prefect_port=port, mlflow_port=None)


@app.command()
def ui(
    ctx: typer.Context,
    workspace: WorkspaceOption = Path("workspace"),
    prefect_port: Annotated[
        int, typer.Option("--prefect-port", min=1, max=65535, help="Port of the Prefect UI.")
    ] = 4200,
    mlflow_port: Annotated[
        int, typer.Option("--mlflow-port", min=1, max=65535, help="Port of the MLflow UI.")
    ] = 5000,
) -> None:
    """Start the Prefect server and the MLflow UI over the workspace on 127.0.0.1, print both URLs, and stop
    both on Ctrl-C. Every segflow command on this workspace uses this Prefect server meanwhile."""
    serve_until_interrupted(ctx, workspace, prefect_port=prefect_port, mlflow_port=mlflow_port)


def stop_on_sigterm(signum: int, frame: Any) -> None:  # SIGTERM and SIGHUP
    raise KeyboardInterrupt


def serve_until_interrupted(
    ctx: typer.Context, workspace: Path, prefect_port: int, mlflow_port: int | None
) -> None:
    from tasks.servers import (
        find_running_server,
        forget_server,
        port_is_free,
        record_server,
        start_mlflow,
        start_prefect,
    )

    ws = open_workspace(workspace)
    configure_environment(ws, verbose=is_verbose(ctx))
    running = find_running_server(ws)
    if running is not None:
        fail(f"a Prefect server for {ws.root} is already running at {running}: use it, or stop it first")
    for port, option in (
        (prefect_port, "--prefect-port" if mlflow_port else "--port"),
        (mlflow_port, "--mlflow-port"),
    ):
        if port is not None and not port_is_free(port):
            fail(f"port {port} on 127.0.0.1 is taken: pick another with {option}")
    # `kill` and a closed terminal stop the servers as Ctrl-C does (they run in sessions of their own, so the
    # terminal's hangup reaches this process only).
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    signal.signal(signal.SIGHUP, stop_on_sigterm)
    started = [start_prefect(ws, prefect_port)]
    if mlflow_port is not None:
        started.append(start_mlflow(ws, mlflow_port))
    try:
        with err_console.status("starting ..."):
            for served in started:
                served.wait_until_ready(
                    float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 90))
                )
        record_server(ws, started[0])
        for served in started:
            print_line((f"{served.name}: ", "bold"), served.url, f"  (log {served.log_path})")
        print_line(
            f"segflow commands on {ws.root} use this Prefect server; Ctrl-C stops {'both' if len(started) > 1 else 'it'}"
        )
        while all(served.process.poll() is None for served in started):
            time.sleep(0.5)
        stopped = next(served for served in started if served.process.poll() is not None)
        fail(f"the {stopped.name} stopped (exit {stopped.process.returncode}): see {stopped.log_path}")
    except KeyboardInterrupt:
        print_line("stopping ...")
    finally:
        forget_server(ws)
        for served in reversed(started):
            served.stop()


@app.command()
def validate(ctx: typer.Context, workspace: WorkspaceOption = Path("workspace")) -> None:
    """Re-run the validation suites on the current warehouse and print what each found."""
    ws, server = prepare_writer(ctx, workspace, must_exist=True)
    from flows.validate import validate_warehouse

    wait_for_prefect(server)
    with err_console.status("validating the warehouse ..."):
        results = validate_warehouse(workspace=str(ws.root))
    table = Table(title="validation", title_justify="left")
    by_source = any(result.subject for result in results)  # events: one suite per source, named by it
    for column in (
        "suite",
        *(("source",) if by_source else ()),
        "expectation",
        "severity",
        "status",
        "observed",
    ):
        table.add_column(column)
    for result in results:
        for check in result.checks:
            if check.success:
                status = Text("passed", style="green")
            elif check.severity == "critical":
                status = Text("FAILED", style="red")
            else:
                status = Text("warning", style="yellow")
            table.add_row(
                cell(result.suite),
                *((cell(result.subject),) if by_source else ()),
                cell(check.description),
                cell(check.severity),
                status,
                cell(check.observed),
            )
    console.print(table)
    for result in results:
        print_line(f"report: {result.report_path}")
    print_line(f"all reports: {ws.reports_dir / 'validation' / 'index.html'}")
    failed = [
        f"{result.suite}: {check.description}"
        for result in results
        for check in result.checks
        if not check.success and check.severity == "critical"
    ]
    if any(not result.success for result in results):
        fail(
            f"{len(failed)} critical check{'s' if len(failed) != 1 else ''} failed ({'; '.join(failed[:3])}"
            f"{'; ...' if len(failed) > 3 else ''}): the table above says what was seen, the reports why"
        )


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
    print_line(
        f"wrote {counts['events']:,} events of {counts['users']:,} users on {counts['items']:,} items to {out}"
    )
    print_line(
        f"run them with: segflow run --source {out / 'source.toml'} --workspace ws-{out.name} "
        "(a workspace of their own)"
    )


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="segflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
