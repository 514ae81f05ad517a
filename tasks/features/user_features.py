"""The fitted feature model: per-user features from events by the SQL in sql/features/, with the statistics
learned at fit time (reference time, category idf, item popularity, item categories, category columns)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.features.events import as_events_table, memory_connection
from tasks.features.interactions import InteractionWeights
from tasks.warehouse import load_sql

MAX_CATEGORY_COLUMNS = 50
FEATURE_TABLES = (
    "fct_interactions",
    "fct_user_activity",
    "fct_user_time",
    "fct_user_category",
    "fct_user_popularity",
)
OTHER_CATEGORY = "cat:(other)"


@dataclass(frozen=True)
class UserFeatures:
    """Features of a set of users: the wide frame (one row per user, sorted by id) and the feature tables."""

    users: np.ndarray
    frame: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    events: pa.Table  # the events the features were computed from (for models that read sequences)
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

    @classmethod
    def fit(
        cls, events: pa.Table, items: pa.Table, weights: InteractionWeights
    ) -> tuple[FeatureModel, UserFeatures]:
        """Learn the statistics from `events` and return them with the features of the events' users."""
        con = memory_connection()
        try:
            known = _known_items(con, events, items)
            _open(con, events, known, weights)
            con.execute(f"create temp table fit_category_idf as {load_sql('features/fit_category_idf')}")
            con.execute(
                f"create temp table fit_item_popularity as {load_sql('features/fit_item_popularity')}"
            )
            end_ts = con.execute("select max(ts) from seg_events").fetchall()[0][0]
            n_users = con.execute("select count(distinct user_id) from fct_user_category_share").fetchall()[
                0
            ][0]
            unseen_idf = math.log(1 + n_users) + 1
            tables = _user_tables(con, end_ts, unseen_idf)
            top = (
                tables["fct_user_category"].group_by("category").len()
                .sort(["len", "category"], descending=[True, False]).head(MAX_CATEGORY_COLUMNS)
            )  # fmt: skip
            category_columns = ["cat:" + c for c in top["category"].to_list()]
            if tables["fct_user_category"]["category"].n_unique() > len(category_columns):
                category_columns.append(OTHER_CATEGORY)
            wide = _wide_frame(tables, set(category_columns))
            model = cls(
                weights=weights, end_ts=end_ts, unseen_idf=unseen_idf,
                category_idf=con.sql("select * from fit_category_idf order by category").to_arrow_table(),
                item_popularity=con.sql("select * from fit_item_popularity order by item_id").to_arrow_table(),
                items=known,
                columns=tuple(c for c in wide.columns if c != "user_id" and not c.startswith("cat:"))
                + tuple(category_columns),
            )  # fmt: skip
        finally:
            con.close()
        return model, model._features(tables, wide, events, known)

    def transform(self, events) -> UserFeatures:
        """The features of the users in `events` (any frame of the canonical columns), by the fitted statistics."""
        events = events if isinstance(events, pa.Table) else as_events_table(events)
        con = memory_connection()
        try:
            known = _known_items(con, events, self.items)
            _open(con, events, known, self.weights)
            con.register("fit_category_idf", self.category_idf)
            con.register("fit_item_popularity", self.item_popularity)
            tables = _user_tables(con, self.end_ts, self.unseen_idf)
        finally:
            con.close()
        category_columns = {c for c in self.columns if c.startswith("cat:")}
        return self._features(tables, _wide_frame(tables, category_columns), events, known)

    def _features(
        self, tables: dict[str, pl.DataFrame], wide: pl.DataFrame, events: pa.Table, items: pa.Table
    ) -> UserFeatures:
        """The wide frame in the fitted columns: a column the fit had but these users lack is null."""
        missing = [pl.lit(None, dtype=pl.Float64).alias(c) for c in self.columns if c not in wide.columns]
        frame = wide.with_columns(missing).select("user_id", *self.columns).sort("user_id")
        return UserFeatures(frame["user_id"].to_numpy().astype(object), frame, tables, events, items)


def _known_items(con, events: pa.Table, catalogue: pa.Table) -> pa.Table:
    """`item_id, title, category, text` for the events' items: the catalogue's, and where it lacks an item or a
    value, the events' own `item_title` / `item_category` (feeds that name items only in their rows)."""
    con.register("catalogue", _with_item_columns(catalogue))
    con.register("events_in", events)
    known = con.sql(
        """
        with used as (select distinct item_id from events_in),
        named as (
            select
                item_id,
                any_value(item_title order by ts desc) filter (where item_title is not null) as title,
                any_value(item_category order by ts desc) filter (where item_category is not null) as category,
            from events_in
            where item_title is not null or item_category is not null
            group by item_id
        )
        select
            used.item_id,
            coalesce(catalogue.title, named.title) as title,
            coalesce(catalogue.category, named.category) as category,
            catalogue.text,
        from used
        left join catalogue on catalogue.item_id = used.item_id
        left join named on named.item_id = used.item_id
        order by used.item_id
        """
    ).to_arrow_table()
    con.unregister("catalogue")
    con.unregister("events_in")
    return known


def _with_item_columns(items: pa.Table) -> pa.Table:
    """The catalogue with all of `item_id, title, category, text` (absent ones null)."""
    for name in ("title", "category", "text"):
        if name not in items.column_names:
            items = items.append_column(name, pa.nulls(len(items), pa.string()))
    return items.select(["item_id", "title", "category", "text"])


def _open(con, events: pa.Table, items: pa.Table, weights: InteractionWeights) -> None:
    con.register("seg_events", events)
    con.register("seg_items", items)
    con.execute(
        f"create temp table fct_interactions as {load_sql('features/fct_interactions')}", weights.as_params()
    )
    con.execute(
        f"create temp table fct_user_category_share as {load_sql('features/fct_user_category_share')}"
    )


def _user_tables(con, end_ts: datetime, unseen_idf: float) -> dict[str, pl.DataFrame]:
    con.execute(
        f"create temp table fct_user_category as {load_sql('features/fct_user_category')}",
        {"unseen_idf": unseen_idf},
    )
    con.execute(f"create temp table fct_user_popularity as {load_sql('features/fct_user_popularity')}")
    con.execute(
        f"create temp table fct_user_activity as {load_sql('features/fct_user_activity')}", {"end_ts": end_ts}
    )
    con.execute(f"create temp table fct_user_time as {load_sql('features/fct_user_time')}")
    return {table: con.sql(f"select * from {table} order by all").pl() for table in FEATURE_TABLES}


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
