"""A learned family named alone on a shop as real files come: item ids of long unicode with quotes and
commas, users with one event and users who only returned things. The run publishes, the same seed gives the
same segments twice, and the saved segmenter places users whose items the fit never saw."""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.segment.segmenter import Segmenter
from tests.helpers import query, write_csv_source

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("prefect_harness")


def item_id(k: int) -> str:
    return ("ü€ \"quoted\" 'single', comma; " * 4 + str(k), f"  spaced {k}  ", f"naïve-{k}")[k % 3]


def hostile_rows(n_users: int = 90) -> list[str]:
    rng = random.Random(7)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for u in range(n_users):
        n_events = 1 if u % 10 == 0 else rng.randint(3, 12)
        kind = "return" if u % 15 == 1 else None
        for j in range(n_events):
            item = item_id((u % 3) * 8 + rng.randint(0, 7))
            writer.writerow([f'user "{u}"', item, kind or rng.choice(["view", "purchase", "click"]),
                             f"2026-01-{1 + (u + 2 * j) % 27:02d}"])  # fmt: skip
    return out.getvalue().splitlines(keepends=True)


@pytest.mark.slow
def test_sequence_named_alone_publishes_the_same_segments_twice_and_places_strangers(tmp_path):
    spec = write_csv_source(tmp_path / "hostile", hostile_rows())
    published = []
    for name in ("first", "second"):
        workspace = tmp_path / name
        result = runner.invoke(
            app, ["run", "--source", str(spec), "--embedding", "sequence", "--k", "3",
                  "--workspace", str(workspace)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        published.append(
            query(
                workspace,
                "select user_id, segment_id, round(distance, 6) from user_segments order by user_id",
            )
        )
    assert len(published[0]) == 90
    assert published[0] == published[1]

    segmenter = Segmenter.load(tmp_path / "second" / "exports" / "current" / "segmenter.pkl")
    strangers = pl.DataFrame(
        {
            "user_id": ["new 1", "new 1", "new 2"],
            "item_id": ["never seen", "nor this", item_id(4)],
            "event_type": ["view", "purchase", "view"],
            "ts": [datetime(2026, 2, 1)] * 3,
        }
    )
    placed = segmenter.assign(strangers)
    assert placed["user_id"].to_list() == ["new 1", "new 2"]
    assert set(placed["segment_id"].to_list()) <= {0, 1, 2} and placed["distance"].is_finite().all()
