"""A catalogue so small that some users have interacted with every item: they have nothing left to recommend,
so their ready list is empty, and the run still publishes (the published-tables suite asked every user for a
list, and a three-item shop published nothing)."""

from __future__ import annotations

import pytest

from flows.segment_users import segment_users
from tasks.segment.settings import SegmentSettings
from tests.helpers import query, write_csv_source

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_users_who_have_seen_every_item_get_an_empty_list_and_the_run_publishes(tmp_path, workspace):
    rows = []
    for u in range(60):
        items = ["a", "b", "c"] if u < 12 else (["a", "b"] if u % 2 else ["c"])
        rows += [f"u{u:02d},{item},view,2026-11-{1 + i:02d}\n" for i, item in enumerate(items)]
    spec = write_csv_source(tmp_path / "tiny", rows)
    settings = SegmentSettings(embedding="combined", k=2, micro_k=2, personal_weight=0.0)
    segment_users(source=str(spec), workspace=str(workspace), settings=settings)
    assert query(workspace, "select count(*) from user_segments") == [(60,)]
    lists = dict(query(workspace, "select user_id, count(*) from user_recommendations group by user_id"))
    # Those who saw all three items have no list; the others get exactly the items they have not seen.
    assert not any(f"u{u:02d}" in lists for u in range(12))
    assert {user: n for user, n in lists.items()} == {f"u{u:02d}": 1 if u % 2 else 2 for u in range(12, 60)}
