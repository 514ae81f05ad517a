"""The holdout split: the one place that decides which events a fit reads (the training part or all).

Users with >= 5 distinct items hold out the last 20% (at least 1) of their distinct items by first
interaction (sql/segments/seg_holdout.sql); the training part is every event of the other (user, item) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.features.events import memory_connection
from tasks.warehouse import load_sql

MIN_ITEMS = 5
HOLDOUT_FRACTION = 0.2
MAX_EVAL_USERS = 50_000  # past this, a fixed random sample of the held-out users is scored


@dataclass(frozen=True)
class EventSplit:
    """`train`: the events a fit may read; `heldout`: user -> the items held out of it."""

    train: pa.Table
    heldout: dict[str, set[str]]
    n_heldout_items: int


def split_events(events: pa.Table, seed: int = 0) -> EventSplit:
    """Hold out each eligible user's last items (module doc); at most MAX_EVAL_USERS users are scored."""
    con = memory_connection()
    try:
        con.register("seg_events", events)
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
        (n_pairs,) = con.execute("select count(*) from heldout").fetchone()
        users = [
            user for (user,) in con.execute("select distinct user_id from heldout order by 1").fetchall()
        ]
        if len(users) > MAX_EVAL_USERS:  # only the scored users' items come into Python
            keep = np.random.default_rng(seed).choice(len(users), size=MAX_EVAL_USERS, replace=False)
            con.register("scored", pa.table({"user_id": [users[i] for i in sorted(keep)]}))
            con.execute(
                "create or replace temp table heldout as select * from heldout semi join scored using (user_id)"
            )
        pairs = con.execute("select user_id, item_id from heldout order by all").fetchall()
    finally:
        con.close()
    heldout: dict[str, set[str]] = {}
    for user, item in pairs:
        heldout.setdefault(user, set()).add(item)
    return EventSplit(train, heldout, n_pairs)
