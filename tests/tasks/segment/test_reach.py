"""The segments' reach: a listener with a play or two lies far beyond every segment (their behaviour is like
nobody's), so the nearest centre is an accident of how little they did; they are placed by taste instead, and
every assignment says how it was placed. Data as on Last.fm: rock and pop listeners with 25 to 40 plays each
over a few weeks, a quarter of them off their main taste, and two habits (daytime and night listening) across
both tastes."""

from __future__ import annotations

from dataclasses import replace

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


def test_a_heavy_listener_beyond_the_reach_keeps_the_nearest_centre(fitted):
    """Far for how much they did, not how little: their nearest segment still describes how they listen."""
    segmenter, _ = fitted
    rng = np.random.default_rng(5)
    heavy = as_events_table(pl.DataFrame(plays("heavy", list(rng.choice(ROCK[:30], 3000)), [1, 2], 28, rng)))
    features = segmenter.features.transform(heavy)
    nearest = segmenter.clusterer.predict(segmenter.embedder.transform(features).vectors)[0]
    placed = segmenter.assign(heavy).to_dicts()[0]
    assert placed["distance"] > segmenter.reach.limit
    assert (placed["segment_id"], placed["placed_by"]) == (int(nearest[0]), "far")
