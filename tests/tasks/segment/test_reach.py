"""The segments' reach: a listener with a play or two lies far beyond every segment (their behaviour is like
nobody's), so the nearest centre is an accident of how little they did; they are placed by taste instead, and
every assignment says how it was placed. Data as on Last.fm: rock and pop listeners with 25 to 40 plays each
over a few weeks, a quarter of them off their main taste, and two habits (daytime and night listening) across
both tastes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tasks.features.events import as_events_table
from tasks.segment.segmenter import Segmenter, fit_segmenter
from tasks.segment.settings import SegmentSettings
from tests.helpers import POP, ROCK, cold_plays, listeners, plays


@pytest.fixture(scope="module")
def fitted() -> tuple[Segmenter, pl.DataFrame]:
    events = as_events_table(pl.DataFrame(listeners()))
    items = pa.table({"item_id": ROCK + POP, "category": [None] * 80}, schema=pa.schema(
        [("item_id", pa.string()), ("category", pa.string())]
    ))  # fmt: skip
    segmenter = fit_segmenter(events, items, SegmentSettings(), 4, micro_k=4)
    return segmenter, segmenter.assign(events)


def cold(user: str, items: list[str]) -> pa.Table:
    return as_events_table(pl.DataFrame(cold_plays(user, items)))


def taste_segments(assigned: pl.DataFrame, parity: int) -> set[int]:
    """The segments whose fitted users are mostly rock (parity 0) or pop (1) listeners (day and night ones
    apart: a play or two tells nothing of when someone listens, so either is right)."""
    mostly = assigned.group_by("segment_id").agg(
        ((pl.col("user_id").str.slice(1).cast(pl.Int64) % 2 == parity).mean() > 0.5).alias("mostly")
    )
    return set(mostly.filter("mostly")["segment_id"])


def test_the_fits_own_users_are_placed_by_their_nearest_centre(fitted):
    segmenter, assigned = fitted
    assert assigned["placed_by"].value_counts().sort("placed_by").rows() == [("centre", 240)]
    assert assigned["distance"].max() <= segmenter.reach.limit


def test_a_listener_with_one_play_is_placed_in_the_segment_of_their_taste(fitted):
    segmenter, assigned = fitted
    rock, pop = taste_segments(assigned, 0), taste_segments(assigned, 1)
    assert len(rock) == len(pop) == 2 and not rock & pop
    events = pa.concat_tables([cold("one_rock", ["rock03"]), cold("one_pop", ["pop05"]),
                               cold("two_rock", ["rock07", "rock12"])])  # fmt: skip
    placed = {row["user_id"]: row for row in segmenter.assign(events).to_dicts()}
    assert {user: row["placed_by"] for user, row in placed.items()} == dict.fromkeys(placed, "taste")
    assert placed["one_rock"]["segment_id"] in rock and placed["two_rock"]["segment_id"] in rock
    assert placed["one_pop"]["segment_id"] in pop
    # The distance published is to the centre of the segment they are placed in, beyond the reach.
    centre = segmenter.clusterer.centroids[placed["one_pop"]["segment_id"]]
    vectors = segmenter.embedder.transform(segmenter.features.transform(events)).vectors
    assert placed["one_pop"]["distance"] == pytest.approx(float(np.linalg.norm(vectors[0] - centre)))
    assert min(row["distance"] for row in placed.values()) > segmenter.reach.limit


def test_without_the_reach_every_cold_listener_lands_where_their_few_plays_put_them(fitted):
    """What a segmenter saved before the reach does: one segment for both tastes (the accident the reach
    corrects), each user marked as placed by the nearest centre."""
    segmenter, _ = fitted
    events = pa.concat_tables([cold("one_rock", ["rock03"]), cold("one_pop", ["pop05"])])
    placed = replace(segmenter, reach=None).assign(events)
    assert placed["segment_id"].n_unique() == 1
    assert placed["placed_by"].to_list() == ["centre", "centre"]


def test_a_cold_listener_of_items_nobody_knows_stays_at_the_nearest_centre_marked_far(fitted):
    segmenter, _ = fitted
    placed = segmenter.assign(cold("unknown", ["never-heard-of"])).to_dicts()
    assert placed[0]["placed_by"] == "far" and placed[0]["distance"] > segmenter.reach.limit


def test_a_listener_heavier_than_any_fitted_one_is_measured_as_the_heaviest_and_keeps_the_nearest_centre(
    fitted,
):
    """3,000 plays where the fit's heaviest had 40: each feature is clipped into the fit's range, so they are
    as near their segment as the heaviest fitted users, not far beyond every segment."""
    segmenter, _ = fitted
    rng = np.random.default_rng(5)
    heavy = as_events_table(pl.DataFrame(plays("heavy", list(rng.choice(ROCK[:30], 3000)), [1, 2], 28, rng)))
    features = segmenter.features.transform(heavy)
    assert features.frame["n_events"][0] == 40 and features.tables["fct_user_activity"]["n_events"][0] == 3000
    nearest = segmenter.clusterer.predict(segmenter.embedder.transform(features).vectors)[0]
    placed = segmenter.assign(heavy).to_dicts()[0]
    assert placed["distance"] <= segmenter.reach.limit
    assert (placed["segment_id"], placed["placed_by"]) == (int(nearest[0]), "centre")


def test_a_newcomer_whose_history_is_one_day_is_placed_as_the_fits_users_with_the_same_plays(fitted):
    """Helper 34: a new user's whole history on the day they are scored made their frequency 1.0, 40 standard
    deviations from the fit's users; every such newcomer, however many plays, sat far beyond every segment.
    A fitted rock listener's own 30-odd plays, all moved to one day: further than any fitted user, so placed by
    taste, in a rock segment."""
    segmenter, assigned = fitted
    rows = [row for row in listeners() if row["user_id"] == "u000"]
    day = max(row["ts"] for row in rows).replace(hour=12)
    newcomer = as_events_table(pl.DataFrame([{**row, "user_id": "again", "ts": day} for row in rows]))
    placed = segmenter.assign(newcomer).to_dicts()[0]
    assert placed["distance"] > segmenter.reach.farthest
    assert placed["placed_by"] == "taste" and placed["segment_id"] in taste_segments(assigned, 0)


def test_hdbscan_that_finds_no_segment_still_fits_and_places_nobody():
    """Helper 34: the reach of no segment raised (normalize of an empty array), where every user used to be
    published as noise."""
    rng = np.random.default_rng(1)
    rows = [
        {"user_id": f"r{u:02d}", "item_id": f"i{int(rng.integers(0, 200))}", "event_type": "view",
         "ts": datetime(2024, 1, 1) + timedelta(hours=int(rng.integers(0, 2000)))}
        for u in range(30) for _ in range(int(rng.integers(1, 6)))
    ]  # fmt: skip
    events = as_events_table(pl.DataFrame(rows))
    items = pa.table({"item_id": pa.array([], pa.string()), "category": pa.array([], pa.string())})
    segmenter = fit_segmenter(events, items, SegmentSettings(clusterer="hdbscan"), 0, micro_k=2)
    assigned = segmenter.assign(events)
    assert (
        assigned.height == 30
        and set(assigned["segment_id"]) == {-1}
        and set(assigned["placed_by"]) == {"none"}
    )


def test_scoring_with_a_segmenter_saved_before_the_reach_says_a_retrain_places_far_users(fitted, tmp_path):
    """Helper 34: an old workspace scored cold users in one segment at distance 80, `centre`, and said nothing."""
    from tasks.score.score import assign_events

    segmenter, _ = fitted
    events = as_events_table(pl.DataFrame(cold_plays("one_rock", ["rock03"])))
    old = replace(segmenter, reach=None).save(tmp_path / "old.pkl")
    assignments, _, _, notes = assign_events(old, events)
    assert assignments["placed_by"].to_list() == ["centre"]
    assert notes == [
        "the published run's segmenter was saved before segments had a reach: a user far from every segment (a "
        "newcomer with a short history) is placed by the nearest centre, not by taste; run `segflow run` to "
        "publish segments that place them"
    ]
    assert assign_events(segmenter.save(tmp_path / "new.pkl"), events)[3] == []
