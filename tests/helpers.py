"""Helpers the tests share: where the shared data lives, and a read-only look into a workspace's warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
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
