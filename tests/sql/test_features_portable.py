"""Every feature SQL file gives the same rows on DuckDB and, transpiled by SQLGlot, on Spark (real local Spark),
on small data made to trip engines up: unicode and quoted ids, quotes in titles, zoned and sub-second times,
weekends, NULL and multi-valued categories, items named only by events, and ties everywhere."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pyarrow as pa
import pytest

from tasks.engine import open_engine
from tasks.engine.spark import to_spark_sql
from tasks.features.events import as_events_table
from tasks.features.interactions import InteractionWeights
from tasks.features.user_features import FeatureModel, with_local_times
from tasks.warehouse import SQL_DIR, load_sql

TOKYO = timezone(timedelta(hours=9))
EVENTS = [
    # user, item, type, ts (zoned: stored in UTC), value, quantity, session, title, category
    ("ü-1", "i'1", "view", datetime(2024, 3, 2, 23, 59, 59, 999999, UTC), None, None, "s1", None, None),
    ("ü-1", "i'1", "add_to_cart", datetime(2024, 3, 3, 8, 30, tzinfo=TOKYO), None, None, "s1", None, None),
    ("ü-1", "i'1", "purchase", datetime(2024, 3, 3, 8, 30, tzinfo=TOKYO), 19.99, 1.0, "s1", None, None),
    ("ü-1", '"quoted"', "play", datetime(2024, 3, 4, 12, 0, 0, 500000, UTC), None, 3.0, None, None, None),
    ("ü-1", "no-cat", "view", datetime(2024, 3, 5, 1, tzinfo=UTC), None, None, "s2", None, None),
    ("用户 2", "i'1", "rate", datetime(1969, 12, 31, 23, 30, tzinfo=UTC), 4.5, None, None, None, None),
    ("用户 2", '"quoted"', "rate", datetime(2024, 3, 9, 20, tzinfo=UTC), None, None, None, None, None),
    (
        "用户 2",
        "named",
        "view",
        datetime(2024, 3, 10, 4, tzinfo=UTC),
        None,
        None,
        "s9",
        'It\'s "new"',
        "Tea|",
    ),
    ("用户 2", "named", "view", datetime(2024, 3, 10, 4, tzinfo=UTC), None, None, "s9", "Another", "Books"),
    ("u'3", "i'1", "remove_from_cart", datetime(2024, 3, 6, 16, tzinfo=UTC), None, None, None, None, None),
    ("u'3", "no-cat", "return", datetime(2024, 3, 6, 16, tzinfo=UTC), None, None, None, None, None),
    ("u'3", "tie-a", "like", datetime(2024, 3, 7, 7, 59, tzinfo=UTC), None, None, None, None, None),
    ("u'3", "tie-b", "share", datetime(2024, 3, 7, 8, tzinfo=UTC), None, None, None, None, None),
    ("u 4", "tie-a", "view", datetime(2024, 3, 8, 12, tzinfo=UTC), None, None, None, None, None),
    ("u 4", "tie-b", "view", datetime(2024, 3, 8, 12, tzinfo=UTC), None, None, None, None, None),
    ("u 4", "unknown", "tag", datetime(2024, 3, 8, 12, tzinfo=UTC), None, None, None, None, None),
]
ITEMS = pa.table(
    {
        "item_id": ["i'1", '"quoted"', "no-cat", "tie-a", "tie-b", "named"],
        "title": ["O'Brien's \"Best\"", None, "No category", "Tie A", "Tie B", None],
        "category": ["Tea| Books ", "Books||Music", None, "Tea", "Books", None],
        "text": [None, 'said "hi"', None, None, None, None],
    }
)
# The files in the order the feature stage runs them, with their parameters.
FILES = [
    ("seg_items", {}),
    ("fct_interactions", InteractionWeights().as_params()),
    ("fct_user_category_share", {}),
    ("fit_category_idf", {}),
    ("fit_item_popularity", {}),
    ("fit_category_users", {}),
    ("fct_user_category", {"unseen_idf": 2.75}),
    ("fct_user_popularity", {}),
    ("fct_user_activity", {"end_ts": datetime(2024, 3, 10, 4, 0, 0, 250000)}),
    ("fct_user_time", {}),
]


@pytest.fixture(scope="module")
def events() -> pa.Table:
    columns = ["user_id", "item_id", "event_type", "ts", "value", "quantity", "session_id"]
    columns += ["item_title", "item_category"]
    frame = pl.DataFrame(EVENTS, schema=columns, orient="row")
    return as_events_table(frame)


def run_files(engine: str, events: pa.Table, spark_master: str) -> dict[str, pl.DataFrame]:
    with open_engine(engine, spark_master) as sql:
        sql.register("seg_events", with_local_times(events, "UTC"))
        sql.register("catalogue", ITEMS)
        for name, params in FILES:
            sql.create(name, f"features/{name}", params)
        return {name: pl.from_arrow(sql.fetch(name)) for name, _ in FILES}


@pytest.fixture(scope="module")
def spark_tables(events, spark_master) -> dict[str, pl.DataFrame]:
    """The files' rows on Spark, run once for the tests that read them (Spark takes seconds per file)."""
    return run_files("spark", events, spark_master)


def assert_same_rows(duck: pl.DataFrame, spark: pl.DataFrame, name: str) -> None:
    assert duck.schema == spark.schema, name
    assert duck.height == spark.height, name
    for column, dtype in duck.schema.items():
        left, right = duck[column].to_list(), spark[column].to_list()
        if dtype.is_float():  # sums in another order may differ in the last bits
            assert all(
                (a is None and b is None)
                or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12))
                for a, b in zip(left, right, strict=True)
            ), (name, column, left, right)
        else:
            assert left == right, (name, column)


def test_every_feature_file_is_covered():
    assert sorted(path.stem for path in (SQL_DIR / "features").glob("*.sql")) == sorted(n for n, _ in FILES)


def test_every_feature_file_transpiles_without_loss():
    for name, _ in FILES:
        assert "select * from final" in load_sql(f"features/{name}").lower(), name
        to_spark_sql(load_sql(f"features/{name}"))  # SQLGlot raises on what it cannot carry over


def test_every_feature_file_gives_the_same_rows_on_duckdb_and_spark(events, spark_master, spark_tables):
    duck, spark = run_files("duckdb", events, spark_master), spark_tables
    for name, _ in FILES:
        assert duck[name].height > 0, name
        assert_same_rows(duck[name], spark[name], name)


def test_the_hard_cases_come_out_as_meant(spark_tables):
    tables = spark_tables
    items = tables["seg_items"].filter(pl.col("item_id") == "named").row(0, named=True)
    assert (items["title"], items["category"]) == ('It\'s "new"', "Tea|")  # a tie in time: the greatest
    shares = tables["fct_user_category_share"].filter(pl.col("user_id") == "用户 2")
    # i'1 rated 4.5 ("Tea| Books "), "quoted" rated with no value (1.0, "Books||Music": an empty part too),
    # "named" viewed twice (2.0, "Tea|" from the events): 7.5 in all.
    expected = {"": 1 / 3 + 1, "Books": 2.25 + 1 / 3, "Music": 1 / 3, "Tea": 2.25 + 1}
    assert shares["category"].to_list() == sorted(expected)
    assert shares["share"].to_list() == pytest.approx([expected[c] / 7.5 for c in sorted(expected)])
    time = tables["fct_user_time"].filter(pl.col("user_id") == "ü-1").row(0, named=True)
    # 2024-03-02 23:59:59 is a Saturday; Tokyo 08:30 on Sunday the 3rd is 23:30 UTC on Saturday.
    assert time["share_weekend"] == pytest.approx(3 / 5)
    activity = tables["fct_user_activity"].filter(pl.col("user_id") == "用户 2").row(0, named=True)
    assert activity["recency_days"] == pytest.approx(0.25 / 86400)  # sub-second times count


def test_the_feature_model_fits_the_same_on_both_engines(events, spark_master):
    weights = InteractionWeights()
    # In a zone whose offset changes between the events (US daylight saving starts on 2024-03-10).
    duck_model, duck = FeatureModel.fit(events, ITEMS, weights, "duckdb", timezone="America/New_York")
    spark_model, spark = FeatureModel.fit(events, ITEMS, weights, "spark", spark_master, "America/New_York")
    assert spark_model.timezone == "America/New_York" == duck_model.timezone
    assert spark_model.columns == duck_model.columns
    assert (spark_model.end_ts, spark_model.unseen_idf) == (duck_model.end_ts, duck_model.unseen_idf)
    assert spark_model.items.equals(duck_model.items)
    assert_same_rows(pl.from_arrow(duck_model.category_idf), pl.from_arrow(spark_model.category_idf), "idf")
    assert spark_model.item_popularity.equals(duck_model.item_popularity)
    assert_same_rows(duck.frame, spark.frame, "wide frame")
    # A model fitted on Spark transforms (on DuckDB) to the same features it fitted.
    assert_same_rows(spark.frame, spark_model.transform(events).frame, "transform")


def test_a_catalogue_without_categories_fits_the_same_on_both_engines(events, spark_master):
    bare = pa.table({"item_id": ITEMS["item_id"]})  # no title, category or text column at all
    uncategorised = events.drop_columns(["item_title", "item_category"])
    uncategorised = as_events_table(uncategorised)
    duck_model, duck = FeatureModel.fit(uncategorised, bare, InteractionWeights(), "duckdb")
    spark_model, spark = FeatureModel.fit(uncategorised, bare, InteractionWeights(), "spark", spark_master)
    assert duck.tables["fct_user_category"].height == 0 == spark.tables["fct_user_category"].height
    assert spark_model.columns == duck_model.columns and spark_model.unseen_idf == duck_model.unseen_idf
    assert_same_rows(duck.frame, spark.frame, "wide frame")
