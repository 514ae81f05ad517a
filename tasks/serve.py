"""The read side: segments and recommendations from the published snapshot (the Parquet under
`exports/current`), queried on an in-memory DuckDB, so a reader never waits for a writer and never sees half
a run. The queries are `sql/serving/*.sql`.

A snapshot written since the micro level exists also holds each user's micro-segment memberships and ready
blended list, the titles of every listed item, the run's own `segment_runs` row and the run's segmenter.
What the exports do not hold (a user's events and seen items; titles and the run in older snapshots) is read
from the warehouse only when no writer has it, and without waiting: otherwise the caller goes on without it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from tasks.warehouse import latest_event_time, load_sql, lock_holder
from tasks.workspace import Workspace, find_writer_pid

PUBLISHED_FILES = ("user_segments", "segment_profiles", "segment_recommendations")
SEGMENTER_FILE = "segmenter.pkl"


@dataclass(frozen=True)
class Snapshot:
    """One published run's export folder, resolved once: a switch of `exports/current` while a command runs
    cannot mix two runs."""

    folder: Path

    def path(self, table: str) -> str:
        return str(self.folder / f"{table}.parquet")

    def has(self, table: str) -> bool:
        """Whether the snapshot holds `table` (older snapshots lack the micro level, titles and the run)."""
        return (self.folder / f"{table}.parquet").is_file()

    @property
    def segmenter_path(self) -> Path:
        return self.folder / SEGMENTER_FILE


def find_snapshot(exports_dir: Path) -> Snapshot | None:
    """The snapshot `exports/current` points at now; None when nothing has been published."""
    folder = Path(os.path.realpath(exports_dir / "current"))
    if not all((folder / f"{table}.parquet").is_file() for table in PUBLISHED_FILES):
        return None
    return Snapshot(folder)


def _rows(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> list[dict]:
    result = con.execute(load_sql(f"serving/{name}"), params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def query_snapshot(name: str, params: dict) -> list[dict]:
    """Rows of `sql/serving/<name>.sql` as dicts, on a fresh in-memory connection (nothing is shared)."""
    con = duckdb.connect(":memory:")
    try:
        return _rows(con, name, params)
    finally:
        con.close()


def read_profiles(snapshot: Snapshot) -> list[dict]:
    return query_snapshot("segment_profiles", {"segment_profiles": snapshot.path("segment_profiles")})


def read_run_labels(exports_dir: Path, run_id: str) -> dict[int, str]:
    """Segment id -> label of run `run_id`, from its export folder, or, once that is pruned, from the newest
    kept folder of a scoring of it (`<run_id>-scored-...`: scoring keeps the run's segments and labels);
    empty when none is kept."""
    folders = [exports_dir / run_id, *sorted(exports_dir.glob(f"{run_id}-scored-*"), reverse=True)]
    kept = next((Snapshot(f) for f in folders if Snapshot(f).has("segment_profiles")), None)
    return {p["segment_id"]: p["label"] for p in read_profiles(kept)} if kept is not None else {}


def read_published_run(snapshot: Snapshot) -> dict:
    """run_id, assigned_at, n_users and k, from the snapshot alone."""
    params = {name: snapshot.path(name) for name in ("user_segments", "segment_profiles")}
    return query_snapshot("published_run", params)[0]


def read_user_segment(snapshot: Snapshot, user_id: str) -> dict | None:
    """The user's segment_id, label and distance; None when the user is not in the snapshot."""
    params = {name: snapshot.path(name) for name in ("user_segments", "segment_profiles")}
    found = query_snapshot("user_segment", {**params, "user": user_id})
    return found[0] if found else None


def read_recommendations(
    snapshot: Snapshot, segment_id: int, n: int, seen_items: Sequence[str] = ()
) -> list[dict]:
    """The segment's list less `seen_items`, topped up from the global list: item_id and score, best first."""
    params = {
        "segment_recommendations": snapshot.path("segment_recommendations"),
        "segment": segment_id,
        "seen_items": list(seen_items),
        "n": n,
    }
    return query_snapshot("user_recommendations", params)


def read_export_run(snapshot: Snapshot) -> dict | None:
    """source, embedding, clusterer, k, created_at and personal_weight (None before the micro level) of the
    snapshot's run; None in an older snapshot."""
    if not snapshot.has("segment_runs"):
        return None
    rows = query_snapshot("export_run", {"segment_runs": snapshot.path("segment_runs")})
    return rows[0] if rows else None


def read_user_memberships(snapshot: Snapshot, user_id: str) -> list[tuple[int, float]] | None:
    """The user's published (micro_segment_id, weight), heaviest first; None when the snapshot has no micro
    level."""
    if not snapshot.has("user_memberships"):
        return None
    params = {"user_memberships": snapshot.path("user_memberships"), "user": user_id}
    return [(row["micro_segment_id"], row["weight"]) for row in query_snapshot("user_memberships", params)]


def describe_memberships(snapshot: Snapshot, memberships: Sequence[tuple[int, float]]) -> list[dict]:
    """micro_segment_id, weight, size, segment_id and top_categories of each membership, heaviest first."""
    params = {
        "micro_segments": snapshot.path("micro_segments"),
        "micro_ids": [int(m) for m, _ in memberships],
        "weights": [float(w) for _, w in memberships],
    }
    return query_snapshot("micro_segment_details", params)


def read_user_list(snapshot: Snapshot, user_id: str, n: int) -> list[dict] | None:
    """The user's published blended list (rank, item_id, score; seen items excluded when it was published);
    None when the snapshot has no such lists."""
    if not snapshot.has("user_recommendations"):
        return None
    params = {"user_recommendations": snapshot.path("user_recommendations"), "user": user_id, "n": n}
    return query_snapshot("user_blended_list", params)


def read_export_titles(snapshot: Snapshot, item_ids: Sequence[str]) -> dict[str, str | None] | None:
    """item_id -> title from the snapshot's catalogue extract; None in an older snapshot."""
    if not snapshot.has("item_titles"):
        return None
    rows = query_snapshot(
        "export_item_titles", {"item_titles": snapshot.path("item_titles"), "item_ids": list(item_ids)}
    )
    return {row["item_id"]: row["title"] for row in rows}


@dataclass(frozen=True)
class WarehouseLook:
    """A read-only connection to the warehouse, or why there is none."""

    con: duckdb.DuckDBPyConnection | None
    unavailable: str | None = None


@contextmanager
def look_into_warehouse(workspace: Workspace) -> Iterator[WarehouseLook]:
    """A read-only look into the warehouse when no writer has it. Never waits: while a segflow run holds the
    workspace, or any process holds the file for writing, `con` is None and `unavailable` says why. Keep the
    block short: a writer cannot open the file while a reader has it."""
    writer_pid = find_writer_pid(workspace)
    if writer_pid is not None and writer_pid != os.getpid():
        yield WarehouseLook(None, f"segflow process {writer_pid} is writing the warehouse")
        return
    if not workspace.warehouse_path.exists():
        yield WarehouseLook(None, f"there is no warehouse in {workspace.root}")
        return
    try:
        con = duckdb.connect(str(workspace.warehouse_path), read_only=True)
    except duckdb.IOException as error:
        yield WarehouseLook(None, f"{lock_holder(error)} has the warehouse open for writing")
        return
    try:
        yield WarehouseLook(con)
    finally:
        con.close()


def _warehouse_rows(look: WarehouseLook, name: str, params: dict) -> list[dict] | None:
    if look.con is None:
        return None
    try:
        return _rows(look.con, name, params)
    except duckdb.CatalogException:  # a warehouse from before the table existed
        return None


def read_seen_items(look: WarehouseLook, user_id: str) -> list[str] | None:
    """The items the user has interacted with; None when the warehouse could not be read."""
    rows = _warehouse_rows(look, "user_seen_items", {"user": user_id})
    return None if rows is None else [row["item_id"] for row in rows]


def read_item_titles(look: WarehouseLook, item_ids: Sequence[str]) -> dict[str, str | None]:
    """item_id -> title from the catalogue; empty when the warehouse could not be read."""
    rows = _warehouse_rows(look, "item_titles", {"item_ids": list(item_ids)}) or []
    return {row["item_id"]: row["title"] for row in rows}


def read_segment_run(look: WarehouseLook, run_id: str) -> dict | None:
    """source, embedding, clusterer, k and created_at of the run; None when unknown or unreadable."""
    rows = _warehouse_rows(look, "segment_run", {"run_id": run_id})
    return rows[0] if rows else None


def read_user_history(look: WarehouseLook, user_id: str) -> list[dict] | None:
    """valid_from, valid_to, segment_id and run_id of the user's spells, oldest first; None when the
    warehouse could not be read."""
    return _warehouse_rows(look, "user_segment_history", {"user": user_id})


def read_user_events(look: WarehouseLook, user_id: str):
    """The user's events as an Arrow table of the columns a segmenter reads (no rows: no events); None when
    the warehouse could not be read."""
    if look.con is None:
        return None
    return look.con.sql(load_sql("serving/user_events"), params={"user": user_id}).to_arrow_table()


def read_quarantined_reasons(look: WarehouseLook, user_id: str) -> list[tuple[str, int]]:
    """The reasons of the quarantined rows that hold the user id as one of their values (in any field: a
    quarantined row's user column is not known), with how many rows each, most first (empty when none, or
    when the warehouse could not be read)."""
    rows = _warehouse_rows(look, "user_quarantine", {"user": user_id}) or []
    return Counter(row["reason"] for row in rows if _holds_value(row["record"], user_id)).most_common()


def _holds_value(record: str | None, value: str) -> bool:
    """Whether a quarantined record (the raw row as JSON, or the file's line) holds `value` as a whole value:
    `u1` is not in `u10,i1,view`."""
    if not record:
        return False
    if record.startswith("{"):
        try:
            row = json.loads(record)
        except ValueError:
            row = None
        if isinstance(row, dict):
            return value in _json_values(row)
    return any(field.strip().strip('"').strip() == value for field in re.split(r"[,;\t|]", record))


def _json_values(value: object) -> set[str]:
    """Every scalar of a JSON value, nested ones too (a Segment user under context.traits.id), as text."""
    if isinstance(value, dict):
        return set().union(*map(_json_values, value.values()))
    if isinstance(value, list):
        return set().union(*map(_json_values, value))
    return set() if value is None else {str(value)}


def read_latest_event_time(look: WarehouseLook) -> datetime | None:
    """Where the warehouse's events end (`latest_event_time`): what `segflow score` measures users as of."""
    return latest_event_time(look.con) if look.con is not None else None


@dataclass(frozen=True)
class LiveAssignment:
    """A segment, memberships and ready list given now by the snapshot's saved segmenter, not published."""

    segment_id: int
    distance: float
    memberships: list[tuple[int, float]]
    recommendations: list[dict]  # item_id, score; best first (none without a micro level)
    placed_by: str | None = None  # tasks/segment/reach.py


def assign_now(snapshot: Snapshot, events, n: int, as_of: datetime | None = None) -> LiveAssignment | None:
    """The segment, micro-segment memberships and list of `n` items the snapshot's saved segmenter gives the
    (one) user in `events`, measured as of `as_of` (`latest_event_time`, as `segflow score` would
    measure them), as a run would publish them; None when the snapshot holds no segmenter."""
    if not snapshot.segmenter_path.is_file():
        return None
    from tasks.segment.segmenter import Segmenter  # the model code: imported only when a user needs it

    segments, frame, lists = Segmenter.load(snapshot.segmenter_path).score(events, n, as_of)
    assigned = segments.row(0, named=True)
    memberships, recommendations = [], []
    if frame is not None:
        memberships = list(zip(frame["micro_segment_id"].to_list(), frame["weight"].to_list(), strict=True))
        recommendations = lists.select("item_id", "score").to_dicts()
    return LiveAssignment(
        int(assigned["segment_id"]), float(assigned["distance"]), memberships, recommendations,
        assigned.get("placed_by"),
    )  # fmt: skip
