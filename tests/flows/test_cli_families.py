"""`segflow run` with embedding families: the training options, their usage errors, and the comparison the
summary prints."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.helpers import query

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("prefect_harness")  # the settings are parsed once the API is up


def lines(output: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--embedding", "svd,graph"], "error: Invalid value for '--embedding': 'svd,graph': unknown embedding 'graph'; choose auto or one or more of behaviour, svd, combined, sequence, lightgcn, autoencoder, text, fusion (see `segflow run --help`)"),
        (["--time-budget", "0"], "error: Invalid value for '--time-budget': 0.0: Input should be greater than 0 (see `segflow run --help`)"),
        (["--max-epochs", "0"], "error: Invalid value for '--max-epochs': 0: Input should be greater than or equal to 1 (see `segflow run --help`)"),
        (["--accelerator", "tpu"], "error: Invalid value for '--accelerator': 'tpu': Input should be 'auto', 'cpu' or 'gpu' (see `segflow run --help`)"),
    ],
)  # fmt: skip
def test_a_bad_training_option_names_the_option_and_exits_2(args, message, workspace):
    result = runner.invoke(app, ["run", *args, "--workspace", str(workspace)])
    assert result.exit_code == 2, result.output
    assert lines(result.output) == [message]
    assert not workspace.exists()  # a usage error leaves no half-made workspace


@pytest.mark.slow
def test_the_summary_compares_the_families_and_a_worse_forced_run_says_so(workspace):
    first = runner.invoke(
        app,
        ["run", "--source", "demo:300", "--embedding", "combined,autoencoder", "--time-budget", "5",
         "--workspace", str(workspace)],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    rows = {line.split("│")[1].strip(): line for line in first.output.splitlines() if line.startswith("│")}
    assert "published" in rows["combined"] + rows["autoencoder"]
    chosen = "combined" if "published" in rows["combined"] else "autoencoder"
    assert query(workspace, "select embedding from segment_runs where is_current") == [(chosen,)]

    worse = runner.invoke(
        app, ["run", "--source", "demo:300", "--embedding", "behaviour", "--workspace", str(workspace)]
    )
    assert worse.exit_code == 0, worse.output
    text = " ".join(worse.output.split())
    assert "note: not published, the champion stays: segment Recall@10" in text
    assert "segments of this run: NOT published (the champion's stay)" in text  # not taken for the published
    assert "embedding families" not in text  # one family: nothing to compare
    assert query(workspace, "select embedding from segment_runs where is_current") == [(chosen,)]
