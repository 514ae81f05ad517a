"""What a user of `segflow` sees: one `error:` line and a documented exit code per failure (the traceback only
with --verbose), readers that answer while a writer holds the warehouse, data printed as text, an ingest
summary that fits a screen, and no process left behind by a killed run."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from typer.testing import CliRunner

from flows import cli
from flows.cli import app
from tests.helpers import query, write_csv_source
from tests.tasks.test_serve import CATEGORY, LABEL, RUN_ID, write_published

runner = CliRunner()
SEGFLOW = str(Path(sys.executable).parent / "segflow")


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def published(workspace: Path) -> Path:
    write_published(workspace)
    return workspace


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "spec"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------------------------------------ usage: 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--k", "0"], "error: Invalid value for '--k': '0': use auto or a whole number of segments, at least 2 (see `segflow run --help`)"),
        (["run", "--k", "abc"], "error: Invalid value for '--k': 'abc': use auto or a whole number of segments, at least 2 (see `segflow run --help`)"),
        (["ingest", "--source", "demo:abc"], "error: Invalid value for '--source' / '-s': 'demo:abc': demo:N needs a whole number of users, e.g. demo:300 (see `segflow ingest --help`)"),
        (["ingest", "--source", "nosuchkind:x"], "error: Invalid value for '--source' / '-s': unknown source 'nosuchkind:x': use demo, demo:N, demo:N:titles, movielens:DIR or PATH.toml (see `segflow ingest --help`)"),
        (["run", "--source", "demo:300:fancy"], "error: Invalid value for '--source' / '-s': bad demo source 'demo:300:fancy': use demo, demo:N_USERS, demo:titles or demo:N_USERS:titles (see `segflow run --help`)"),
        (["run", "--micro-k", "1"], "error: Invalid value for '--micro-k': '1': use auto or a whole number of micro-segments, at least 2 (see `segflow run --help`)"),
        (["run", "--timezone", "Europe/Berln"], "error: Invalid value for '--timezone': unknown time zone 'Europe/Berln': did you mean Europe/Berlin? (see `segflow run --help`)"),
        (["run", "--min-segment-size", "0"], "error: Invalid value for '--min-segment-size': Input should be greater than or equal to 1 (see `segflow run --help`)"),
        (["run", "--source", "movielens:/no/such/folder"], "error: Invalid value for '--source' / '-s': 'movielens:/no/such/folder': /no/such/folder is not a folder (the unzipped MovieLens data set) (see `segflow run --help`)"),
        (["user", "u1", "-n", "-5"], "error: Invalid value for '-n': -5: ask for at least 1 recommendation (see `segflow user --help`)"),
        (["nosuch"], "error: No such command 'nosuch'. (see `segflow --help`)"),
        (["--bogus", "segments"], "error: No such option: --bogus (Possible options: --verbose) (see `segflow --help`)"),
    ],
)  # fmt: skip
def test_a_bad_option_value_is_one_line_and_exit_2(args, message, workspace):
    result = runner.invoke(app, [*args, "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert lines(result.output) == [message]
    assert not workspace.exists()


@pytest.mark.usefixtures("prefect_harness")  # the settings are parsed once the command has its Prefect API
@pytest.mark.parametrize(("option", "value"), [("--embedding", "foo"), ("--clusterer", "bar")])
def test_a_bad_segment_setting_names_the_option_and_exits_2(option, value, workspace):
    result = runner.invoke(app, ["run", option, value, "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert not workspace.exists()
    (line,) = lines(result.output)
    assert line.startswith(f"error: Invalid value for '{option}': ")
    assert line.count(f"'{value}'") == 1  # named once, not again before the message that names it
    assert line.endswith("(see `segflow run --help`)")


@pytest.mark.parametrize("source", ["demo", "demo:300", "demo:titles", "demo:300:titles"])
def test_every_demo_source_is_accepted(source):
    assert cli.check_source(source) == source


def test_a_source_spec_that_does_not_exist_is_a_usage_error(tmp_path, workspace):
    missing = tmp_path / "nope.toml"
    result = runner.invoke(app, ["ingest", "--source", str(missing), "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert lines(result.output) == [
        f"error: Invalid value for '--source' / '-s': source spec {missing} does not exist (see `segflow ingest --help`)"
    ]
    assert not workspace.exists()


def test_a_spec_error_keeps_its_brackets(spec_dir, workspace):
    spec = spec_dir / "s.toml"
    spec.write_text('name = "shop"\n')
    result = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert "s.toml: missing the [events] table (path and columns)" in result.output


@pytest.mark.parametrize("command", ["ingest", "run", "score"])
def test_a_spec_whose_path_matches_no_files_is_told_before_a_workspace_is_made(command, spec_dir, workspace):
    """A newcomer's typo in a path ended in exit 2 after 20 s, with a workspace left behind."""
    spec = spec_dir / "s.toml"
    columns = 'user_id = "u"\nitem_id = "i"\nevent_type = "e"\nts = "t"\n'
    spec.write_text(f'name = "shop"\n[events]\npath = "nope/*.csv"\n[events.columns]\n{columns}')
    result = runner.invoke(app, [command, "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert lines(result.output) == [
        f"error: Invalid value for '--source' / '-s': events path '{spec_dir.resolve()}/nope/*.csv' matches no "
        "files: fix the path in the spec (a relative one is read from the spec's folder) or put the files there "
        f"(see `segflow {command} --help`)"
    ]
    assert not workspace.exists()
    assert cli.check_deploy_source(str(spec)) == str(spec)  # a deployment's files may come later
    assert cli.check_deploy_source("movielens:/not/there/yet") == "movielens:/not/there/yet"


@pytest.mark.parametrize("command", ["ingest", "run", "score"])
def test_a_spec_that_reads_a_column_its_file_lacks_is_told_before_a_workspace_is_made(
    command, spec_dir, workspace
):
    """Told after 20 s (Prefect's start, then the file staged), with a workspace left behind; now from the
    file's header in about a second."""
    (spec_dir / "events.csv").write_text("uid,sku,kind,when\nu1,i1,view,2024-01-01 10:00:00\n")
    spec = spec_dir / "s.toml"
    columns = 'user_id = "uid"\nitem_id = "skuu"\nevent_type = "kind"\nts = \'"when"\'\n'
    spec.write_text(f'name = "shop"\n[events]\npath = "events.csv"\n[events.columns]\n{columns}')
    result = runner.invoke(app, [command, "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert lines(result.output) == [
        "error: Invalid value for '--source' / '-s': s.toml line 6: the expression for item_id = 'skuu' reads "
        f"skuu, which events.csv does not have (its columns: uid, sku, kind, when) (see `segflow {command} --help`)"
    ]
    assert not workspace.exists()


def test_a_movielens_folder_without_its_files_is_told_before_a_workspace_is_made(spec_dir, workspace):
    (spec_dir / "movies.txt").write_text("not MovieLens\n")
    result = runner.invoke(app, ["run", "--source", f"movielens:{spec_dir}", "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert lines(result.output) == [
        f"error: Invalid value for '--source' / '-s': movielens:{spec_dir.resolve()}: no MovieLens files found "
        "(expected ratings.csv, ratings.dat or u.data) (see `segflow run --help`)"
    ]
    assert not workspace.exists()


def test_checking_the_segment_options_imports_no_model_code():
    """`--embedding lightgnc` was refused after 22-31 s: the settings imported every family (torch, Lightning)
    and the command started its Prefect server first. The registries now name the classes."""
    code = "import sys, tasks.segment.settings as s; s.SegmentSettings(embedding='lightgcn', clusterer='dec'); print(sorted(m for m in ('torch', 'pytorch_lightning', 'prefect') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(cli.__file__).parents[1]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["ingest"], ["run"], ["validate"], ["segments"], ["user", "u1"]])
def test_a_workspace_that_is_a_file_is_a_usage_error_for_every_command(command, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    result = runner.invoke(app, [*command, "--workspace", str(path)])
    assert result.exit_code == 2
    assert len(lines(result.output)) == 1 and f"{path} is a file" in result.output
    assert path.read_text() == "mine"


@pytest.mark.parametrize("command", [["segments"], ["user", "u1"], ["validate"]])
def test_reading_a_missing_workspace_says_so_and_creates_nothing(command, tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(app, [*command, "--workspace", str(missing)])
    assert result.exit_code == 2
    assert lines(result.output) == [
        f"error: {missing} holds no workspace: pass the folder a `segflow run` wrote with --workspace (env SEGFLOW_WORKSPACE)"
    ]
    assert not missing.exists()


def test_a_real_usage_error_prints_one_line_on_stderr_and_nothing_else(workspace):
    done = subprocess.run(
        [SEGFLOW, "ingest", "--source", "demo:abc", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert lines(done.stderr) == [
        "error: Invalid value for '--source' / '-s': 'demo:abc': demo:N needs a whole number of users, e.g. demo:300 (see `segflow ingest --help`)"
    ]


# ----------------------------------------------------------------------------------- failures: 1, verbose


def test_an_unexpected_error_is_one_line_and_a_hint_and_verbose_adds_the_traceback(published, monkeypatch):
    import tasks.serve

    def broken(snapshot):  # injected fault
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tasks.serve, "read_profiles", broken)
    result = runner.invoke(app, ["segments", "--workspace", str(published)])
    assert result.exit_code == 1
    assert lines(result.output) == ["error: RuntimeError: boom", "run with --verbose for the traceback"]

    for args, env in ((["--verbose"], {}), ([], {"SEGFLOW_VERBOSE": "1"})):
        result = runner.invoke(app, [*args, "segments", "--workspace", str(published)], env=env)
        assert result.exit_code == 1
        assert (
            "Traceback (most recent call last)" in result.output
            and 'raise RuntimeError("boom' in result.output
        )
        assert lines(result.output)[-1] == "error: RuntimeError: boom"
    assert "SEGFLOW_VERBOSE" not in os.environ  # a command's environment does not outlive it


def test_a_corrupt_export_in_a_real_process_is_one_line_without_traceback(published):
    (published / "exports" / "current" / "segment_profiles.parquet").write_bytes(b"not parquet")
    done = subprocess.run(
        [SEGFLOW, "segments", "--workspace", str(published)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    error, hint = lines(done.stderr)
    assert error.startswith("error: InvalidInputException: ") and "segment_profiles.parquet" in error
    assert hint == "run with --verbose for the traceback"


@pytest.mark.slow
def test_a_refused_file_in_a_real_process_prints_no_prefect_log_or_traceback(tmp_path, workspace):
    spec = write_csv_source(
        tmp_path / "src", [f"u{i},i1,{'view' if i < 8 else 'teleport'},2024-01-01\n" for i in range(10)]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    done = subprocess.run(
        [SEGFLOW, "ingest", "--source", str(spec), "--workspace", str(workspace)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr and "| ERROR" not in done.stdout + done.stderr
    assert lines(done.stderr) == [
        "error: 1 of 1 file refused, nothing of them inserted. Every ingest reads a refused file again until it "
        "is fixed or moved out of the source's folder: for a rejected one, --max-bad-fraction lets its good rows "
        "in (the bad ones quarantined); for a failed one, see its validation report ([validation] in the spec "
        "sets the checks)"
    ]
    assert (
        f"rejected {spec.parent / 'e.csv'}: 2 of 10 rows are bad (20.0% > max-bad-fraction 5.0%)"
        in done.stdout
    )


def test_a_second_writer_is_told_at_once_before_anything_starts(workspace):
    workspace.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from tasks.workspace import open_workspace, hold_workspace\n"
         f"with hold_workspace(open_workspace({str(workspace)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["ingest"], ["validate"]):
            result = runner.invoke(app, [*command, "--workspace", str(workspace)])
            assert result.exit_code == 1
            assert lines(result.output) == [
                f"error: workspace is busy (pid {holder.pid}): another segflow process is writing {workspace}; "
                "run this again when it has finished"
            ]
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------ readers


def test_segments_and_user_read_the_published_snapshot(published):
    result = runner.invoke(app, ["segments", "--workspace", str(published)])
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0] == f"run {RUN_ID} (2026-01-01 12:00) on shop: combined + kmeans, K = 2"
    assert LABEL in result.output and CATEGORY in result.output  # text, never markup

    result = runner.invoke(app, ["user", "u1", "--workspace", str(published), "-n", "4"])
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0] == f"user u1 is in segment 0: {LABEL}"
    assert "top 4 recommendations (seen items excluded)" in result.output
    rows = [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in result.output.splitlines()
        if line.startswith("│")
    ]
    assert rows == [
        ["1", "i2", "Second [bold]thing[/]", "0.800"], ["2", "i3", "", "0.700"],
        ["3", "i4", "", "0.400"], ["4", "i6", "", "0.300"],
    ]  # fmt: skip

    result = runner.invoke(app, ["user", "u4 [b]", "--workspace", str(published)])
    assert result.exit_code == 0 and lines(result.output)[0] == "user u4 [b] is in segment 1: light users"
    result = runner.invoke(app, ["user", "nobody", "--workspace", str(published)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: user 'nobody' has no segment: they have no events in {published}; the global list applies to them (segment_recommendations where segment_id = -1)"
    ]


def test_a_user_whose_every_row_is_in_quarantine_is_told_why(published):
    """Helper 38: such a user read as one the shop never saw ("they have no events")."""
    con = duckdb.connect(str(published / "warehouse.duckdb"))
    con.executemany(
        "insert into quarantine values ('s', 'e.csv', ?, ?, ?, 'b', now())",
        [
            (1, "event_type: 'bogus' is not a known event type", '{"user":"q1","item":"i1","kind":"bogus"}'),
            (2, "event_type: 'bogus' is not a known event type", '{"user":"q1","item":"i2","kind":"bogus"}'),
            (3, "malformed line: missing columns (expected 4, found 2)", "q1,i3"),
            (4, "malformed line: missing columns (expected 4, found 2)", "q10,i3"),  # another user
            (5, "user_id: missing (null or empty)", '{"context":{"traits":{"id":"q1"}},"kind":"view"}'),
        ],
    )
    con.close()
    result = runner.invoke(app, ["user", "q1", "--workspace", str(published)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: user 'q1' has no segment: they have no events in {published}, but 4 quarantined rows hold 'q1' as a value (event_type: 'bogus' is not a known event type (2); malformed line: missing columns (expected 4, found 2) (1); user_id: missing (null or empty) (1)): fix them if they are theirs; the global list applies to them (segment_recommendations where segment_id = -1)"
    ]


def table_rows(output: str, title: str) -> list[list[str]]:
    """The cells of the table printed under `title`."""
    rows = []
    for line in output.split(title + "\n", 1)[1].splitlines():
        if not line.startswith(("┏", "┃", "┡", "│", "└")):
            break
        if line.startswith(("┃", "│")):
            rows.append([c.strip() for c in line.replace("┃", "│").split("│")[1:-1]])
    return rows


@pytest.fixture
def published_micro(workspace: Path) -> Path:
    write_published(workspace, micro=True)
    return workspace


def test_user_shows_both_levels_and_the_ready_list_from_the_snapshot_alone(published_micro):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; con = duckdb.connect({str(published_micro / 'warehouse.duckdb')!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert (
            holder.stdout.readline().strip() == "open"
        )  # the warehouse is not needed: no note, titles shown
        result = runner.invoke(app, ["user", "u1", "--workspace", str(published_micro), "-n", "2"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0] == f"user u1 is in segment 0: {LABEL}"
    assert "note" not in result.output
    assert table_rows(result.output, "micro-segments (for recommenders)") == [
        ["micro-segment", "weight", "users", "in segment", "top categories"],
        ["0", "0.75", "2", "0", "tea"],
        ["1", "0.25", "2", "1", f"{CATEGORY}, tea"],
    ]
    assert table_rows(result.output, "top 2 recommendations (blended from the micro-segments, seen items excluded)") == [
        ["rank", "item", "title", "score"], ["1", "i5", "Fifth [b]", "0.550"], ["2", "i2", "Second thing", "0.500"],
    ]  # fmt: skip
    result = runner.invoke(app, ["segments", "--workspace", str(published_micro)])
    assert lines(result.output)[0] == f"run {RUN_ID} (2026-01-01 12:00) on shop: combined + kmeans, K = 2"


@pytest.mark.parametrize(
    ("weight", "origin"),
    [
        (0.0, "blended from the micro-segments"),
        (0.25, "the micro-segments' items, ordered by their blend and, at weight 0.25, the user's own taste"),
        (1.0, "the micro-segments' items, ordered by the user's own taste"),
    ],
)
def test_the_user_list_title_says_how_the_run_weighed_the_users_own_taste(published_micro, weight, origin):
    # A run with personal weight 1 orders each list by the user's taste alone: "blended" would not be true.
    runs = next((published_micro / "exports").glob("*/segment_runs.parquet"))
    duckdb.execute(
        f"copy (select * replace (json_object('personal_weight', {weight}) as metrics) from '{runs}') "
        f"to '{runs}.new' (format parquet)"
    )
    os.replace(f"{runs}.new", runs)
    result = runner.invoke(app, ["user", "u1", "--workspace", str(published_micro), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert f"top 2 recommendations ({origin}, seen items excluded)" in " ".join(result.output.split())


def test_a_user_without_events_is_one_line_and_exit_1(published_micro):
    result = runner.invoke(app, ["user", "nobody", "--workspace", str(published_micro)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: user 'nobody' has no segment: they have no events in {published_micro}; the global list applies to them (segment_recommendations where segment_id = -1)"
    ]


def test_an_unpublished_user_while_the_warehouse_is_written_is_told_why_not_now(published_micro):
    with (published_micro / ".lock").open("w") as lock:  # a live segflow writer: this test's own process
        lock.write(str(os.getppid()))
    result = runner.invoke(app, ["user", "u9", "--workspace", str(published_micro)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: user 'u9' is not in the published segments, and segflow process {os.getppid()} is writing the "
        "warehouse, so their events cannot be read to assign them now; ask again when it is done"
    ]


def test_an_unpublished_user_with_events_but_no_saved_segmenter_is_told_what_to_run(published_micro):
    con = duckdb.connect(str(published_micro / "warehouse.duckdb"))
    con.execute("insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) values ('u9', 'i1', 'view', '2026-01-02', 's', 'b', now())")  # fmt: skip
    con.close()
    result = runner.invoke(app, ["user", "u9", "--workspace", str(published_micro)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: user 'u9' is not in the published segments, and run {RUN_ID} saved no segmenter to assign them "
        f"now: run `segflow run --workspace {published_micro}` to publish segments for them"
    ]


def test_readers_answer_every_time_while_another_process_holds_the_warehouse_for_writing(published):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; con = duckdb.connect({str(published / 'warehouse.duckdb')!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        for _ in range(5):
            result = runner.invoke(app, ["segments", "--workspace", str(published)])
            assert result.exit_code == 0, result.output
            assert lines(result.output)[0] == f"run {RUN_ID} (published 2026-01-01 12:30): 4 users, K = 2"
            result = runner.invoke(app, ["user", "u1", "--workspace", str(published), "-n", "3"])
            assert result.exit_code == 0, result.output
            assert lines(result.output)[1] == (
                f"note: process {holder.pid} has the warehouse open for writing, so items the user has seen are "
                "not excluded and titles are not shown; ask again when it is done"
            )
            shown = [
                line.split("│")[2].strip() for line in result.output.splitlines() if line.startswith("│")
            ]
            assert shown == ["i1", "i2", "i3"]
        done = subprocess.run(
            [SEGFLOW, "user", "u1", "--workspace", str(published)], capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stderr == "" and "Traceback" not in done.stdout
    finally:
        holder.kill()
        holder.wait()


def test_nothing_published_yet_is_exit_1(workspace):
    (workspace / "exports").mkdir(parents=True)
    result = runner.invoke(app, ["segments", "--workspace", str(workspace)])
    assert result.exit_code == 1
    assert lines(result.output) == [
        f"error: no segments published in {workspace} yet: run `segflow run --workspace {workspace}` first"
    ]


# ----------------------------------------------------------------------------------------- text, not markup


@pytest.fixture
def captured(monkeypatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=300, highlight=False))
    return out


def test_labels_categories_and_names_from_data_print_as_text(captured):
    profiles = [
        {"segment_id": 0, "label": "coffee [/] tea", "size": 3, "share": 0.5, "top_categories": ["[events]", "[bold]x"]},
        {"segment_id": 1, "label": "[red]", "size": 3, "share": 0.5, "top_categories": None},
    ]  # fmt: skip
    cli.print_segments(profiles)
    cli.print_line("user ", ("[/]", "bold"), " is in segment 0: [events]")
    text = captured.getvalue()
    assert "coffee [/] tea" in text and "[events], [bold]x" in text and "[red]" in text
    assert "user [/] is in segment 0: [events]" in text


def test_where_items_have_no_categories_the_segments_table_shows_top_items(captured):
    profiles = [
        {"segment_id": 0, "label": "Lady Gaga & Rihanna", "size": 3, "share": 0.5, "top_categories": [],
         "top_items": ["Lady Gaga", "Rihanna", "Madonna", "Adele"]},
        {"segment_id": 1, "label": "Metallica & Slayer", "size": 3, "share": 0.5, "top_categories": None,
         "top_items": ["Metallica", "Slayer"]},
    ]  # fmt: skip
    cli.print_segments(profiles)
    text = captured.getvalue()
    assert "top items" in text and "top categories" not in text
    assert "Lady Gaga, Rihanna, Madonna" in text and "Adele" not in text and "Metallica, Slayer" in text


# ------------------------------------------------------------------------------------------- ingest output


def outcome(i: int, status: str = "ingested", **counts):
    from tasks.ingest.files import FileOutcome

    rows = {"rows_read": 10, "rows_inserted": 9, "rows_duplicate": 1, "rows_quarantined": 0} | counts
    return FileOutcome(
        source="shop [eu]", file=f"/data/day-{i:03d}.csv", kind="events", sha256="x", batch_id=f"b{i}",
        status=status, **rows,
    )  # fmt: skip


def test_an_ingest_of_many_files_ends_with_one_summary_and_each_refused_file(captured):
    from dataclasses import replace

    from flows.ingest import IngestReport

    files = [outcome(i) for i in range(297)] + [
        outcome(297, "skipped", rows_read=0, rows_inserted=0, rows_duplicate=0)
    ]
    files.append(replace(outcome(298, "rejected", rows_inserted=0, rows_duplicate=0, rows_quarantined=10),
                         message="/data/day-298.csv: 10 of 10 rows are bad (100.0% > max-bad-fraction 5.0%)"))  # fmt: skip
    files.append(replace(outcome(299, "failed_validation", rows_inserted=0, rows_duplicate=0),
                         message="events_batch validation failed for batch b299:\n  at least one row: 0 rows"))  # fmt: skip
    report = IngestReport(source="shop [eu]", files=files)
    cli.print_ingest(report)
    assert lines(captured.getvalue()) == [
        "ingest of shop [eu]: 300 files: 297 ingested, 1 skipped, 1 rejected, 1 failed validation; rows: "
        "2,990 read, 2,673 inserted, 297 duplicate, 10 quarantined",
        "rejected /data/day-298.csv: 10 of 10 rows are bad (100.0% > max-bad-fraction 5.0%)",
        "failed_validation events_batch validation failed for batch b299:",
        "  at least one row: 0 rows",
    ]
    captured.truncate(0)
    cli.print_ingest(report, details=True)
    table_rows = [line for line in captured.getvalue().splitlines() if line.startswith("│")]
    assert len(table_rows) == 300 and "day-000.csv" in table_rows[0]


def test_the_ingest_table_wraps_long_file_names_in_80_columns_and_cuts_none(monkeypatch):
    """Piped output is 80 columns wide: the table showed `ratings.c…` and `user_arti…` (MovieLens, Last.fm)."""
    from dataclasses import replace

    from flows.ingest import IngestReport

    captured = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=captured, width=80, highlight=False))
    name = "/data/user_taggedartists-timestamps.dat"
    report = IngestReport(source="lastfm", files=[replace(outcome(0, "failed_validation"), file=name)])
    cli.print_ingest(report)
    table = [line for line in captured.getvalue().splitlines() if line.startswith("│")]
    assert max(len(line) for line in table) <= 80 and not any("…" in line for line in table)
    # The name's pieces, read down the first column, and the status's.
    columns = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table]
    assert "".join(row[0] for row in columns) == Path(name).name
    assert "".join(row[2] for row in columns) == "failed_validation"


def test_the_progress_bar_follows_the_ingest_records(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=screen, force_terminal=True, width=200))
    progress = logging.getLogger(cli.PROGRESS_LOGGER)
    with cli.show_progress("ingesting shop [eu]"):
        for i in (1, 2, 3):
            progress.info("file done", extra={"file_index": i, "n_files": 300, "rows_read_total": 1234 * i,
                                              "file": f"day-{i}.csv", "status": "ingested"})  # fmt: skip
        assert progress.propagate is False
    assert "ingesting shop [eu]" in screen.getvalue() and "file 3 of 300" in screen.getvalue()
    assert "3,702 rows" in screen.getvalue()
    assert progress.handlers == [] and progress.propagate is True  # detached when the ingest ends


@pytest.mark.usefixtures("prefect_harness")
def test_segflow_ingest_of_many_files_prints_a_summary_and_details_on_demand(spec_dir, workspace):
    for day in range(12):
        (spec_dir / f"day-{day:02d}.csv").write_text(
            "user,item,kind,day\n"
            + "".join(f"u{day}-{i},i{i},view,2024-01-{1 + day:02d}\n" for i in range(5))
        )
    spec = spec_dir / "shop.toml"
    spec.write_text(
        'name = "shop"\n[events]\npath = "day-*.csv"\n[events.columns]\nuser_id = "user"\nitem_id = "item"\n'
        'event_type = "kind"\nts = "day"\n'
    )
    result = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "│" not in result.output
    assert lines(result.output)[0] == (
        "ingest of shop: 12 files: 12 ingested, 0 skipped, 0 rejected, 0 failed validation; rows: 60 read, "
        "60 inserted, 0 duplicate, 0 quarantined"
    )
    assert query(workspace, "select count(*) from events") == [(60,)]
    again = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace), "--details"])
    assert again.exit_code == 0, again.output
    assert sum(line.startswith("│ day-") and "skipped" in line for line in again.output.splitlines()) == 12


@pytest.mark.usefixtures("prefect_harness")
def test_the_ingest_summary_says_how_many_rows_read_were_items_and_how_many_events(spec_dir, workspace):
    """Helper 32: `114,261 read, 114,261 inserted` above `104,519 events` read as rows lost (9,742 items)."""
    (spec_dir / "events.csv").write_text(
        "user,item,kind,day\n" + "u1,i1,view,2024-01-01\n" * 1 + "u2,i2,view,2024-01-02\n"
    )
    (spec_dir / "catalogue.csv").write_text("sku,name\ni1,One\ni2,Two\ni3,Three\n")
    spec = spec_dir / "shop.toml"
    spec.write_text(
        'name = "shop"\n[events]\npath = "events.csv"\n[events.columns]\nuser_id = "user"\nitem_id = "item"\n'
        'event_type = "kind"\nts = "day"\n[items]\npath = "catalogue.csv"\n[items.columns]\nitem_id = "sku"\n'
        'title = "name"\n'
    )
    result = runner.invoke(app, ["ingest", "--source", str(spec), "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert (
        " ".join(result.output.split()).count(
            "rows: 5 read, 5 inserted, 0 duplicate, 0 quarantined (2 events, 3 items read)"
        )
        == 1
    )


def test_without_source_a_workspace_reads_its_own_source_again_never_the_demo(tmp_path, workspace):
    """Helper 32: `segflow run --workspace ws-ml`, a retrain as a user writes it, ingested the demo shop into
    the MovieLens workspace (--source defaulted to demo), and its segments were built on both."""
    rows = [f"u{i},i{i % 3},view,2024-01-0{1 + i % 5}\n" for i in range(9)]
    spec = write_csv_source(tmp_path / "shop", rows)
    relative = os.path.relpath(spec)  # kept absolute: a later command may run from another folder
    assert runner.invoke(app, ["ingest", "--source", relative, "--workspace", str(workspace)]).exit_code == 0
    again = runner.invoke(app, ["ingest", "--workspace", str(workspace)])
    assert again.exit_code == 0, again.output
    assert lines(again.output)[0] == f"note: no --source: using this workspace's source, {spec.resolve()}"
    assert "0 ingested, 1 skipped" in again.output
    assert query(workspace, "select source, count(*) from events group by 1") == [("shop", 9)]

    other = write_csv_source(tmp_path / "other", ["v1,i1,view,2024-02-01\n"])
    assert (
        runner.invoke(app, ["ingest", "--source", str(other), "--workspace", str(workspace)]).exit_code == 0
    )
    for command in ("ingest", "run", "score"):
        result = runner.invoke(app, [command, "--workspace", str(workspace)])
        assert result.exit_code == 2
        assert lines(result.output) == [
            "error: Invalid value for '--source' / '-s': this workspace holds the events of 2 sources (other, "
            "shop): name the one to read with --source (demo, movielens:DIR or PATH.toml) "
            f"(see `segflow {command} --help`)"
        ]
    with duckdb.connect(str(workspace / "warehouse.duckdb")) as con:  # as made before locations were kept
        con.execute("delete from events where source = 'other'")
        con.execute("alter table sources drop column location")
    result = runner.invoke(app, ["run", "--workspace", str(workspace)])
    assert result.exit_code == 2
    assert (
        "this workspace's source shop was ingested before segflow kept where a source comes from"
        in result.output
    )
    assert cli.workspace_source(None, None, tmp_path / "new") == "demo"
    with duckdb.connect(
        str(workspace / "warehouse.duckdb")
    ) as con:  # the demo, from before: as it always did
        con.execute("update events set source = 'demo'")
    assert cli.workspace_source(None, None, workspace) == "demo"


# ------------------------------------------------------------------------------------------------ orphans


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)
def test_a_run_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        run = subprocess.Popen(
            [SEGFLOW, "--verbose", "run", "--source", "demo:300", "--workspace", str(tmp_path / "workspace")],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        api_url = None
        while time.monotonic() < deadline and not (api_url and answers(f"{api_url}/health")):
            found = [line for line in log.read_text().splitlines() if line.startswith("Prefect API ")]
            api_url = found[0].split()[2].rstrip(":") if found else None
            assert run.poll() is None, log.read_text()
            time.sleep(0.2)
        assert api_url and answers(f"{api_url}/health"), log.read_text()
        assert len(group_members(run.pid)) >= 2  # the command and its Prefect server
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while group_members(run.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(run.pid) == []
        assert not answers(f"{api_url}/health")
    finally:
        for pid in group_members(run.pid):
            os.kill(pid, signal.SIGKILL)
