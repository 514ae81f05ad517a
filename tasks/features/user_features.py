"""The fitted feature model: per-user features from events by the SQL in sql/features/, with the statistics
learned at fit time (reference time, category idf, item popularity, item categories, category columns).

The SQL runs on an engine (tasks/engine/): DuckDB in this process by default, or Spark for a fit; a transform
(scoring a few users with a saved model) runs on DuckDB.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.clock import spelt_zone
from tasks.engine import EngineName, SqlEngine, open_engine
from tasks.features.events import REQUIRED_EVENT_COLUMNS, as_events_table
from tasks.features.interactions import InteractionWeights

MAX_CATEGORY_COLUMNS = 50
FEATURE_TABLES = (
    "fct_interactions",
    "fct_user_activity",
    "fct_user_time",
    "fct_user_category",
    "fct_user_popularity",
)
OTHER_CATEGORY = "cat:(other)"
OFFSET = re.compile(
    r"[+-][0-9]{2}:[0-9]{2}"
)  # an event's time zone given as its UTC offset, as ingest stores it


@dataclass(frozen=True)
class UserFeatures:
    """Features of a set of users: the wide frame (one row per user, sorted by id) and the feature tables."""

    users: np.ndarray
    frame: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    events: pa.Table  # REQUIRED_EVENT_COLUMNS of the events the features were computed from (for sequences)
    items: pa.Table  # item_id, title, category, text of the events' items, as far as known

    @property
    def interactions(self) -> pl.DataFrame:
        return self.tables["fct_interactions"]


@dataclass(frozen=True)
class FeatureModel:
    """What the features learned from the fit's events; `transform` applies it to any events."""

    weights: InteractionWeights
    end_ts: datetime
    unseen_idf: float
    category_idf: pa.Table  # category, idf
    item_popularity: pa.Table  # item_id, n_users, is_niche
    items: pa.Table  # item_id, title, category, text: the catalogue as the fit knew it
    columns: tuple[str, ...]  # the wide frame's columns, in order
    # Each column's range over the fit's users: a user measured later is clipped into it (`_features`). None:
    # saved before ranges were kept.
    ranges: dict[str, tuple[float, float]] | None = None
    # The users' clock: day parts and weekends are measured in this zone's local time (saved before: UTC).
    timezone: str = "UTC"

    @classmethod
    def fit(
        cls, events: pa.Table, items: pa.Table, weights: InteractionWeights,
        engine: EngineName = "duckdb", spark_master: str | None = None, timezone: str = "UTC",
    ) -> tuple[FeatureModel, UserFeatures]:  # fmt: skip
        """Learn the statistics from `events` and return them with the features of the events' users; the SQL
        runs on `engine` (spark: on the session of `spark_master`, see tasks.engine.open_engine); day parts
        and weekends are measured in `timezone`."""
        with open_engine(engine, spark_master) as sql:
            known = _open(sql, events, items, weights, timezone)
            sql.create("fit_category_idf", "features/fit_category_idf")
            sql.create("fit_item_popularity", "features/fit_item_popularity")
            sql.create("fit_category_users", "features/fit_category_users")
            end_ts = pc.max(events.column("ts")).as_py()
            n_users = sql.fetch("fit_category_users").column("n_users")[0].as_py()
            unseen_idf = math.log(1 + n_users) + 1
            tables = _user_tables(sql, end_ts, unseen_idf)
            category_idf = sql.fetch("fit_category_idf").sort_by("category")
            item_popularity = sql.fetch("fit_item_popularity").sort_by("item_id")
            top = (
                tables["fct_user_category"].group_by("category").len()
                .sort(["len", "category"], descending=[True, False]).head(MAX_CATEGORY_COLUMNS)
            )  # fmt: skip
            category_columns = ["cat:" + c for c in top["category"].to_list()]
            if tables["fct_user_category"]["category"].n_unique() > len(category_columns):
                category_columns.append(OTHER_CATEGORY)
            wide = _wide_frame(tables, set(category_columns))
        columns = tuple(c for c in wide.columns if c != "user_id" and not c.startswith("cat:")) + tuple(
            category_columns
        )
        model = cls(
            weights=weights, end_ts=end_ts, unseen_idf=unseen_idf, category_idf=category_idf,
            item_popularity=item_popularity, items=known, columns=columns, ranges=_ranges(wide, columns),
            timezone=timezone,
        )  # fmt: skip
        return model, model._features(tables, wide, events, known)

    def transform(self, events, as_of: datetime | date | None = None) -> UserFeatures:
        """The features of the users in `events` (any frame of the canonical columns), by the fitted statistics.
        Recency and frequency are measured as of `as_of` when it is later than the fit's end (`segflow score`
        and `segflow user` pass where the warehouse's events end, `latest_event_time`, as a retrain would),
        else as of the fit's end: a user whose whole history follows the fit looked like its most frequent
        users."""
        events = events if isinstance(events, pa.Table) else as_events_table(events)
        reference = max(self.end_ts, utc_datetime(as_of)) if as_of is not None else self.end_ts
        with open_engine("duckdb") as sql:
            known = _open(sql, events, self.items, self.weights, self.timezone)
            sql.register("fit_category_idf", self.category_idf)
            sql.register("fit_item_popularity", self.item_popularity)
            tables = _user_tables(sql, reference, self.unseen_idf)
        category_columns = {c for c in self.columns if c.startswith("cat:")}
        return self._features(tables, _wide_frame(tables, category_columns), events, known)

    def _features(
        self, tables: dict[str, pl.DataFrame], wide: pl.DataFrame, events: pa.Table, items: pa.Table
    ) -> UserFeatures:
        """The wide frame in the fitted columns: a column the fit had but these users lack is null; a value
        outside the fit's range is clipped into it. A user whose whole history is one day had a frequency
        (active days over days since their first event) of 1.0, 36 to 40 standard deviations from any fitted
        user's on ml-latest-small and Last.fm, which put every such newcomer in one segment at 8 times the
        distance of the fit's users, whatever they liked (helper 34); clipped, they are as frequent as the most
        frequent fitted user. The fit's own users are inside its ranges: they are unchanged."""
        missing = [pl.lit(None, dtype=pl.Float64).alias(c) for c in self.columns if c not in wide.columns]
        frame = wide.with_columns(missing).select("user_id", *self.columns).sort("user_id")
        if self.ranges:
            frame = frame.with_columns(
                pl.col(c).clip(pl.lit(low).cast(frame.schema[c]), pl.lit(high).cast(frame.schema[c]))
                for c, (low, high) in self.ranges.items()
                if c in frame.columns
            )
        sequences = events.select(list(REQUIRED_EVENT_COLUMNS))  # shares the buffers of the kept columns only
        return UserFeatures(frame["user_id"].to_numpy().astype(object), frame, tables, sequences, items)


def _ranges(wide: pl.DataFrame, columns: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """The fitted users' smallest and largest value of each numeric column (columns all null left out)."""
    numeric = [c for c in columns if c in wide.columns and wide.schema[c].is_numeric()]
    bounds = wide.select(*(pl.col(c).min().alias(f"lo:{c}") for c in numeric),
                         *(pl.col(c).max().alias(f"hi:{c}") for c in numeric)).row(0, named=True)  # fmt: skip
    return {
        c: (float(bounds[f"lo:{c}"]), float(bounds[f"hi:{c}"]))
        for c in numeric
        if bounds[f"lo:{c}"] is not None and bounds[f"hi:{c}"] is not None
    }


def utc_datetime(value: datetime | date) -> datetime:
    """A time as the events hold it, naive UTC: a zoned datetime converted, a date at its midnight."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return datetime.combine(value, time())


def with_local_times(events: pa.Table, timezone: str) -> pa.Table:
    """The events with `local_ts`: their time (naive UTC) as the user's wall clock showed it, daylight saving
    included: in the event's own `timezone` where the source maps one (an IANA name or a `+HH:MM` offset, as
    ingest stores them), else in the run's `timezone`. What sql/features/fct_user_time reads (the engines
    need no time zone functions)."""
    ts = events.column("ts")
    own = events.column("timezone") if "timezone" in events.column_names else None
    if own is None or own.null_count == len(own):
        return events.append_column(
            "local_ts", _in_zone(pl.from_arrow(ts), timezone).to_arrow().cast(ts.type)
        )
    frame = pl.DataFrame({"ts": pl.from_arrow(ts), "zone": pl.from_arrow(own).fill_null(timezone)})
    frame = frame.with_row_index("row")
    parts = [
        part.with_columns(_in_zone(part["ts"], _known_zone(zone)).alias("local_ts"))
        for (zone,), part in frame.partition_by("zone", as_dict=True).items()
    ]
    local = pl.concat(parts).sort("row")["local_ts"]
    return events.append_column("local_ts", local.to_arrow().cast(ts.type))


def _known_zone(zone: str) -> str:
    """An event's zone as `_in_zone` reads it: a `+HH:MM` offset, or an IANA name in any case as the database
    spells it; a ValueError for anything else (ingest stores only these; a frame given to a segmenter may
    hold anything)."""
    if OFFSET.fullmatch(zone):
        return zone
    spelt = spelt_zone(zone)
    if spelt is None:
        raise ValueError(
            f"an event's timezone is {zone!r}: give an IANA name (Europe/Berlin) or a UTC offset (+02:00)"
        )
    return spelt


def _in_zone(ts: pl.Series, zone: str) -> pl.Series:
    """Naive UTC times as the clock of `zone` (an IANA name, or a `+HH:MM` offset) shows them."""
    if zone == "UTC":
        return ts
    if zone[0] in "+-":
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        return ts + timedelta(minutes=sign * (hours * 60 + minutes))
    return ts.dt.replace_time_zone("UTC").dt.convert_time_zone(zone).dt.replace_time_zone(None)


def _with_item_columns(items: pa.Table) -> pa.Table:
    """The catalogue with all of `item_id, title, category, text` (absent ones null)."""
    for name in ("title", "category", "text"):
        if name not in items.column_names:
            items = items.append_column(name, pa.nulls(len(items), pa.string()))
    return items.select(["item_id", "title", "category", "text"])


def _open(
    sql: SqlEngine, events: pa.Table, catalogue: pa.Table, weights: InteractionWeights, timezone: str
) -> pa.Table:
    """Register the events (with `local_ts`, their time in `timezone`) and their items (`seg_items`), make
    `fct_interactions` and `fct_user_category_share`; returns the items as known (`item_id, title, category,
    text`, by id)."""
    sql.register("seg_events", with_local_times(events, timezone))
    sql.register("catalogue", _with_item_columns(catalogue))
    sql.create("seg_items", "features/seg_items")
    sql.create("fct_interactions", "features/fct_interactions", weights.as_params())
    sql.create("fct_user_category_share", "features/fct_user_category_share")
    return sql.fetch("seg_items").sort_by("item_id")


def _user_tables(sql: SqlEngine, end_ts: datetime, unseen_idf: float) -> dict[str, pl.DataFrame]:
    sql.create("fct_user_category", "features/fct_user_category", {"unseen_idf": unseen_idf})
    sql.create("fct_user_popularity", "features/fct_user_popularity")
    sql.create("fct_user_activity", "features/fct_user_activity", {"end_ts": end_ts})
    sql.create("fct_user_time", "features/fct_user_time")
    return {table: pl.from_arrow(sql.fetch(table)) for table in FEATURE_TABLES}


def _wide_frame(tables: dict[str, pl.DataFrame], category_columns: set[str]) -> pl.DataFrame:
    """One row per user: activity, time, popularity and one `cat:<name>` TF-IDF column per fitted category
    (others pooled in `cat:(other)`)."""
    frame = (
        tables["fct_user_activity"]
        .join(tables["fct_user_time"], on="user_id", how="left")
        .join(tables["fct_user_popularity"], on="user_id", how="left")
    )
    categories = tables["fct_user_category"].select(
        "user_id", ("cat:" + pl.col("category")).alias("category"), "tfidf"
    )
    if categories.height:
        categories = categories.with_columns(
            pl.when(pl.col("category").is_in(pl.Series(sorted(category_columns), dtype=pl.String).implode()))
            .then(pl.col("category"))
            .otherwise(pl.lit(OTHER_CATEGORY))
            .alias("category")
        )
        wide = categories.pivot(on="category", index="user_id", values="tfidf", aggregate_function="sum")
        frame = frame.join(wide, on="user_id", how="left")
    return frame.sort("user_id")
