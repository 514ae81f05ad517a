"""Features: per-user behaviour in SQL (sql/features/*.sql) and the wide user-feature table in Polars.

Every feature query reads the `seg_events` view, which `use_events` points at all events or at the training
part of them (for the evaluation holdout), so one code path serves fitting and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, Field

from tasks.warehouse import load_sql

MAX_CATEGORY_COLUMNS = 50
FEATURE_TABLES = (
    "fct_interactions",
    "fct_user_activity",
    "fct_user_time",
    "fct_user_category",
    "fct_user_popularity",
)


class InteractionWeights(BaseModel):
    """How much each event type counts in the user-item matrix; `rate` events weigh their rating."""

    view: float = 1.0
    click: float = 1.0
    add_to_cart: float = Field(3.0, alias="cart")
    purchase: float = 5.0
    tag: float = 2.0
    play: float = 1.0
    like: float = 3.0
    share: float = 3.0
    other: float = 1.0

    model_config = {"populate_by_name": True}

    def as_params(self) -> dict[str, float]:
        return {
            "w_view": self.view,
            "w_click": self.click,
            "w_cart": self.add_to_cart,
            "w_purchase": self.purchase,
            "w_tag": self.tag,
            "w_play": self.play,
            "w_like": self.like,
            "w_share": self.share,
            "w_other": self.other,
        }


def use_events(con: duckdb.DuckDBPyConnection, *holdout_tables: str) -> None:
    """Point `seg_events` at all events, less the (user_id, item_id) pairs held out in `holdout_tables`."""
    sql = "select events.* from events"
    for table in holdout_tables:
        sql += f" anti join {table} on {table}.user_id = events.user_id and {table}.item_id = events.item_id"
    con.execute(f"create or replace temp view seg_events as {sql}")


def build_features(con: duckdb.DuckDBPyConnection, weights: InteractionWeights) -> list[str]:
    """Materialise the feature tables from `seg_events`; returns their names."""
    con.execute(
        f"create or replace temp table fct_interactions as {load_sql('features/fct_interactions')}",
        weights.as_params(),
    )
    for table in FEATURE_TABLES[1:]:
        con.execute(f"create or replace temp table {table} as {load_sql(f'features/{table}')}")
    return list(FEATURE_TABLES)


def user_feature_frame(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per user, one column per feature (category TF-IDF pivoted to `cat:<name>` columns)."""
    activity = con.sql("select * from fct_user_activity").pl()
    time = con.sql("select * from fct_user_time").pl()
    popularity = con.sql("select * from fct_user_popularity").pl()
    categories = con.sql("select user_id, 'cat:' || category as category, tfidf from fct_user_category").pl()
    frame = activity.join(time, on="user_id", how="left").join(popularity, on="user_id", how="left")
    if categories.height:
        # A large catalogue can have thousands of categories: the most widespread ones keep their own column,
        # the rest share one, so the frame stays narrow.
        top = (
            categories.group_by("category")
            .len()
            .sort(["len", "category"], descending=[True, False])
            .head(MAX_CATEGORY_COLUMNS)
        )
        categories = categories.with_columns(
            pl.when(pl.col("category").is_in(top["category"].implode()))
            .then(pl.col("category"))
            .otherwise(pl.lit("cat:(other)"))
            .alias("category")
        )
        wide = categories.pivot(on="category", index="user_id", values="tfidf", aggregate_function="sum")
        frame = frame.join(wide, on="user_id", how="left")
    return frame.sort("user_id")


@dataclass
class Interactions:
    """`fct_interactions` as sparse matrices: users x items, rows and columns in id order."""

    users: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix  # 1 where the user touched the item (any event, whatever its weight)
    weights: sp.csr_matrix  # the interaction weights, positive ones only

    def user_positions(self, user_ids) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.users)}
        return np.array([index.get(u, -1) for u in user_ids])


def load_interactions(con: duckdb.DuckDBPyConnection) -> Interactions:
    """Read `fct_interactions` into sparse matrices; ids are coded in DuckDB, so no Python loop per row."""
    coded = con.sql(
        """
        with users as (
            select user_id, row_number() over (order by user_id) - 1 as u
            from (select distinct user_id from fct_interactions)
        ),
        items as (
            select item_id, row_number() over (order by item_id) - 1 as i
            from (select distinct item_id from fct_interactions)
        )
        select users.u, items.i, greatest(fct_interactions.weight, 0) as weight
        from fct_interactions
        join users using (user_id)
        join items using (item_id)
        """
    ).to_arrow_table()
    users = np.array(
        [u for (u,) in con.execute("select distinct user_id from fct_interactions order by 1").fetchall()],
        dtype=object,
    )
    items = np.array(
        [i for (i,) in con.execute("select distinct item_id from fct_interactions order by 1").fetchall()],
        dtype=object,
    )
    rows = coded.column("u").to_numpy().astype(np.int64)
    columns = coded.column("i").to_numpy().astype(np.int64)
    shape = (len(users), len(items))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=shape)
    weights = sp.csr_matrix(
        (coded.column("weight").to_numpy().astype(np.float64), (rows, columns)), shape=shape
    )
    weights.eliminate_zeros()
    return Interactions(users, items, matrix, weights)
