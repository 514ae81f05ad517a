"""The holdout split: the one place that decides which events a fit reads (the training part or all).

Users with >= 5 distinct items hold out the last 20% (at least 1) of their distinct items by first
interaction (sql/segments/seg_holdout.sql); the training part is every event of the other (user, item) pairs.

Past MAX_FIT_USERS users the split is made on a fixed random sample of that many users (by seed): everything
that is fit to be scored (the K sweeps, the family comparison, the evaluation and its references) reads the
sample, so those stages cost the same at 100,000 users as at 10 million. The published fit reads all events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.features.events import memory_connection
from tasks.warehouse import load_sql

MIN_ITEMS = 5
HOLDOUT_FRACTION = 0.2
MAX_FIT_USERS = 50_000  # past this, the split is made on a fixed random sample of this many users


@dataclass(frozen=True)
class EventSplit:
    """`train`: the events a fit may read; `heldout`: user -> the items held out of it; `n_users`: the users
    split (all, or the sample), out of `n_users_total`."""

    train: pa.Table
    heldout: dict[str, set[str]]
    n_heldout_items: int
    n_users: int
    n_users_total: int


def split_events(events: pa.Table, seed: int = 0) -> EventSplit:
    """Hold out each eligible user's last items (module doc), of at most MAX_FIT_USERS users."""
    con = memory_connection()
    try:
        con.register("all_events", events)
        users = [
            user for (user,) in con.execute("select distinct user_id from all_events order by 1").fetchall()
        ]
        if len(users) > MAX_FIT_USERS:
            keep = np.random.default_rng(seed).choice(len(users), size=MAX_FIT_USERS, replace=False)
            con.register("sampled", pa.table({"user_id": [users[i] for i in sorted(keep)]}))
            con.execute(
                "create temp view seg_events as select * from all_events semi join sampled using (user_id)"
            )
        else:
            con.execute("create temp view seg_events as select * from all_events")
        con.execute(
            f"create temp table heldout as {load_sql('segments/seg_holdout')}",
            {"min_items": MIN_ITEMS, "fraction": HOLDOUT_FRACTION},
        )
        train = con.sql(
            """
            select seg_events.* from seg_events
            anti join heldout on heldout.user_id = seg_events.user_id and heldout.item_id = seg_events.item_id
            """
        ).to_arrow_table()
        pairs = con.execute("select user_id, item_id from heldout order by all").fetchall()
    finally:
        con.close()
    heldout: dict[str, set[str]] = {}
    for user, item in pairs:
        heldout.setdefault(user, set()).add(item)
    return EventSplit(train, heldout, len(pairs), min(len(users), MAX_FIT_USERS), len(users))


def sample_notes(split: EventSplit) -> list[str]:
    """A line for the run's summary when the split was made on a sample of the users."""
    if split.n_users == split.n_users_total:
        return []
    return [
        f"the K sweeps, the family comparison and the holdout figures used a random sample of {split.n_users:,} "
        f"of {split.n_users_total:,} users; the published segments were fit on all of them"
    ]
