from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from tasks.evaluate import holdout
from tasks.evaluate.holdout import split_events
from tasks.features.events import as_events_table

START = datetime(2024, 1, 1)


def shop(n_users: int, n_items: int) -> pl.DataFrame:
    """User u views items 0..n_items-1, one a day: item 4 (and later) is among the last 20%."""
    rows = [
        (f"u{u:02d}", f"i{i}", "view", START + timedelta(days=i))
        for u in range(n_users)
        for i in range(n_items)
    ]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")


def test_each_user_of_five_items_holds_out_their_last_fifth_and_the_training_part_never_sees_it():
    events = as_events_table(
        pl.concat([shop(3, 10), shop(1, 4).with_columns(pl.lit("short").alias("user_id"))])
    )
    split = split_events(events)
    assert split.heldout == {f"u{u:02d}": {"i8", "i9"} for u in range(3)}  # 20% of 10 items: the last 2
    assert split.n_heldout_items == 6
    train = pl.from_arrow(split.train)
    assert train.height == 3 * 8 + 4  # "short" has 4 items: nothing held out
    assert train.filter(pl.col("item_id").is_in(["i8", "i9"])).height == 0


def test_past_the_cap_the_split_is_made_on_a_seeded_sample_of_users_and_says_so(monkeypatch):
    monkeypatch.setattr(holdout, "MAX_FIT_USERS", 4)
    events = as_events_table(shop(10, 5))
    split = split_events(events, seed=3)
    users = sorted(f"u{u:02d}" for u in range(10))
    expected = [users[i] for i in sorted(np.random.default_rng(3).choice(10, size=4, replace=False))]
    assert sorted(split.heldout) == expected
    assert all(items == {"i4"} for items in split.heldout.values())
    assert (split.n_heldout_items, split.n_users, split.n_users_total) == (4, 4, 10)
    train = pl.from_arrow(split.train)
    assert sorted(train["user_id"].unique()) == expected  # the other users are in no fit that is scored
    assert train.height == 4 * 4 and train.filter(pl.col("item_id") == "i4").height == 0
    assert holdout.sample_notes(split) == [
        "the K sweeps, the family comparison and the holdout figures used a random sample of 4 of 10 users; "
        "the published segments were fit on all of them"
    ]
    assert split_events(events, seed=3).heldout == split.heldout
    assert sorted(split_events(events, seed=4).heldout) != expected


def test_under_the_cap_every_user_is_split_and_nothing_is_said():
    split = split_events(as_events_table(shop(10, 5)))
    assert (split.n_users, split.n_users_total, len(split.heldout)) == (10, 10, 10)
    assert holdout.sample_notes(split) == []
