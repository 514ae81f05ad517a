"""Helpers the tests share: where the shared data lives, and a read-only look into a workspace's warehouse."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"
needs_ml_latest_small = pytest.mark.skipif(
    not (ML_LATEST_SMALL / "ratings.csv").exists(),
    reason=f"MovieLens latest-small not found at {ML_LATEST_SMALL} (the shared data folder is absent)",
)
LASTFM = SHARED_DATA / "hetrec2011-lastfm-2k"
needs_lastfm = pytest.mark.skipif(
    not (LASTFM / "user_artists.dat").exists(),
    reason=f"Last.fm hetrec2011-lastfm-2k not found at {LASTFM} (the shared data folder is absent)",
)


def query(workspace: Path, sql: str) -> list[tuple]:
    """Rows of `sql` over the workspace's warehouse, opened read-only (as a user would look)."""
    con = duckdb.connect(str(workspace / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def write_csv_source(folder: Path, rows: list[str], event_type: str = "kind") -> Path:
    """A one-file CSV source (`user,item,kind,day`) and its spec; `event_type` is the mapping expression."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "e.csv").write_text("user,item,kind,day\n" + "".join(rows))
    spec = folder / "s.toml"
    spec.write_text(
        f'name = "{folder.name}"\n[events]\npath = "e.csv"\n[events.columns]\nuser_id = "user"\n'
        f'item_id = "item"\nevent_type = "{event_type}"\nts = "day"\n'
    )
    return spec


# Listeners as on Last.fm, for the segments' reach (tasks/segment/reach.py): two tastes, two habits.
START = datetime(2011, 1, 1)
ROCK = [f"rock{i:02d}" for i in range(40)]
POP = [f"pop{i:02d}" for i in range(40)]


def plays(user: str, items: list[str], hours: list[int], days: int, rng: np.random.Generator) -> list[dict]:
    return [
        {
            "user_id": user,
            "item_id": item,
            "event_type": "play",
            "ts": START + timedelta(days=int(rng.integers(0, days)), hours=int(rng.choice(hours))),
            "value": float(rng.integers(1, 50)),
        }
        for item in items
    ]


def listeners(seed: int = 3) -> list[dict]:
    """The plays of 240 listeners with 25 to 40 plays each over four weeks: rock or pop (75% of their plays,
    the rest of the other taste), by day or by night (user ids `u000`..: even ones rock, odd ones pop)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(240):
        main, other = (ROCK, POP) if u % 2 == 0 else (POP, ROCK)
        hours = [9, 11, 13, 15] if u % 4 < 2 else [0, 1, 2, 23]
        n = int(rng.integers(25, 41))
        n_main = int(round(n * 0.75))
        items = list(rng.choice(main[:30], n_main)) + list(rng.choice(other, n - n_main))
        rows += plays(f"u{u:03d}", items, hours, 28, rng)
    return rows


def cold_plays(user: str, items: list[str]) -> list[dict]:
    """A listener with a play of each of `items`, in one afternoon."""
    return plays(user, items, [14], 1, np.random.default_rng(0))
