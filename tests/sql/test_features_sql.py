"""Feature and segment SQL on a few given events, with the exact rows they must produce."""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import polars as pl
import pytest

from tasks.evaluate.metrics import segment_item_scores
from tasks.features.interactions import InteractionWeights, interaction_matrix
from tasks.segment.micro import ranked_segment_items
from tasks.warehouse import create_warehouse_tables, load_sql

EVENTS = [
    # user, item, type, ts, value
    ("a", "i1", "view", datetime(2024, 1, 1, 9), None),
    ("a", "i1", "add_to_cart", datetime(2024, 1, 1, 9, 5), None),
    ("a", "i1", "purchase", datetime(2024, 1, 1, 9, 10), 20.0),
    ("a", "i2", "view", datetime(2024, 1, 6, 22), None),  # a Saturday
    ("b", "i2", "rate", datetime(2024, 1, 10, 14), 4.5),
    ("b", "i3", "rate", datetime(2024, 1, 10, 15), 2.0),
]


@pytest.fixture
def con():
    con = duckdb.connect(":memory:")
    create_warehouse_tables(con)
    con.executemany(
        "insert into events (user_id, item_id, event_type, ts, value, source, batch_id, ingested_at) values (?, ?, ?, ?, ?, 's', 'b', now())",
        EVENTS,
    )
    con.execute(
        "insert into items (item_id, category, updated_at) values ('i1', 'tea', now()), ('i2', 'tea|books', now()), ('i3', 'books', now())"
    )
    con.execute("create view seg_events as select *, ts as local_ts from events")  # UTC is the local time
    con.execute("create view seg_items as select item_id, category from items")
    con.execute(
        f"create table fct_interactions as {load_sql('features/fct_interactions')}",
        InteractionWeights().as_params(),
    )
    con.execute("create view seg_fct_interactions as select * from fct_interactions")  # as a run stages it
    con.execute(f"create table fct_user_category_share as {load_sql('features/fct_user_category_share')}")
    con.execute(f"create table fit_category_idf as {load_sql('features/fit_category_idf')}")
    con.execute(f"create table fit_item_popularity as {load_sql('features/fit_item_popularity')}")
    yield con
    con.close()


def test_fct_interactions_weighs_each_event_type(con):
    rows = con.execute(
        "select user_id, item_id, weight, n_events from fct_interactions order by all"
    ).fetchall()
    assert rows == [("a", "i1", 9.0, 3), ("a", "i2", 1.0, 1), ("b", "i2", 4.5, 1), ("b", "i3", 2.0, 1)]


def test_fct_user_activity(con):
    rows = con.execute(
        f"""select user_id, n_events, n_items, active_days, round(recency_days, 4), monetary, share_purchase,
        view_to_cart, cart_to_purchase, mean_rating from ({load_sql("features/fct_user_activity")}) order by 1""",
        {"end_ts": datetime(2024, 1, 10, 15)},
    ).fetchall()
    assert rows == [
        (
            "a",
            4,
            2,
            2,
            round((datetime(2024, 1, 10, 15) - datetime(2024, 1, 6, 22)).total_seconds() / 86400, 4),
            20.0,
            0.25,
            0.5,
            1.0,
            None,
        ),
        ("b", 2, 2, 1, 0.0, 0.0, 0.0, None, None, 3.25),
    ]


def test_fct_user_time(con):
    rows = con.execute(
        f"select user_id, share_morning, share_afternoon, share_late, share_weekend from ({load_sql('features/fct_user_time')}) order by 1"
    ).fetchall()
    assert rows == [("a", 0.75, 0.0, 0.25, 0.25), ("b", 0.0, 1.0, 0.0, 0.0)]


def test_fct_user_category_splits_multi_valued_categories_and_weighs_by_idf(con):
    rows = con.execute(
        f"select user_id, category, round(share, 4), round(tfidf, 4) from ({load_sql('features/fct_user_category')}) order by 1, 2",
        {"unseen_idf": 99.0},
    ).fetchall()
    # a: i1 (tea, 9) + i2 (tea|books, 1 split in two) -> tea 9.5, books 0.5 of 10.
    # b: i2 (4.5 split: 2.25 each) + i3 (books, 2) -> books 4.25, tea 2.25 of 6.5.
    # Both users touch both categories, so idf = ln(3/3) + 1 = 1.
    assert rows == [
        ("a", "books", 0.05, 0.05),
        ("a", "tea", 0.95, 0.95),
        ("b", "books", 0.6538, 0.6538),
        ("b", "tea", 0.3462, 0.3462),
    ]


def test_holdout_keeps_the_last_fifth_of_each_eligible_users_items(con):
    con.executemany(
        "insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) values (?, ?, 'view', ?, 's', 'b', now())",
        [("c", f"j{i}", datetime(2024, 2, 1 + i)) for i in range(11)],
    )
    rows = con.execute(
        f"select user_id, item_id from ({load_sql('segments/seg_holdout')}) order by all",
        {"min_items": 5, "fraction": 0.2},
    ).fetchall()
    assert rows == [("c", "j10"), ("c", "j9")]  # 11 items: floor(2.2) = 2 held out; a and b have < 5 items


def test_segment_recommendations_rank_by_member_share_with_a_global_list(con):
    con.execute(
        "create table seg_assignments as select * from (values ('a', 0, 0.0), ('b', 1, 0.0)) t(user_id, segment_id, distance)"
    )
    rows = con.execute(
        load_sql("segments/seg_segment_recommendations"), {"n_items": 2, "run_id": "r"}
    ).fetchall()
    assert rows == [
        (-1, 1, "i2", 1.0, "r"), (-1, 2, "i1", 0.5, "r"),
        (0, 1, "i2", 1.0, "r"), (0, 2, "i1", 1.0, "r"),
        (1, 1, "i2", 1.0, "r"), (1, 2, "i3", 1.0, "r"),
    ]  # fmt: skip


def test_an_unseen_category_gets_the_idf_of_a_category_no_user_touched(con):
    con.execute("insert into fct_user_category_share values ('c', 'garden', 1.0)")
    rows = con.execute(
        f"select category, tfidf from ({load_sql('features/fct_user_category')}) where user_id = 'c'",
        {"unseen_idf": 2.5},
    ).fetchall()
    assert rows == [("garden", 2.5)]


def test_item_popularity_marks_all_but_the_top_fifth_niche(con):
    rows = con.execute("select item_id, n_users, is_niche from fit_item_popularity order by 1").fetchall()
    # i2 has 2 users (rank 0); i1 and i3 have 1 (percent rank 0.5 > 0.2).
    assert rows == [("i1", 1, True), ("i2", 2, False), ("i3", 1, True)]


def test_popularity_features_count_an_unseen_item_as_seen_by_one_user_and_niche(con):
    con.execute("insert into fct_interactions values ('c', 'new', 1.0, 1, now(), now())")
    con.execute(
        f"create table fct_user_category as {load_sql('features/fct_user_category')}", {"unseen_idf": 1.0}
    )
    rows = con.execute(
        f"select user_id, mean_log_popularity, share_niche from ({load_sql('features/fct_user_popularity')}) order by 1"
    ).fetchall()
    assert rows[-1] == ("c", 0.0, 1.0)


def test_evaluated_and_micro_lists_count_what_the_published_lists_count_a_return_alone_is_no_interest(con):
    """A pair with only a return weighs 0: the published segment lists (SQL) never listed it, while the lists
    the holdout scored and the micro-segment lists (Python) counted any event, so the figures in the summary
    were not those of the published tables on a shop with returns."""
    con.execute(
        "insert into events (user_id, item_id, event_type, ts, source, batch_id, ingested_at) "
        "values ('b', 'i4', 'return', '2024-01-11 10:00', 's', 'b', now())"
    )
    con.execute("drop table fct_interactions")
    con.execute(
        f"create table fct_interactions as {load_sql('features/fct_interactions')}",
        InteractionWeights().as_params(),
    )
    con.execute(
        "create table seg_assignments as select * from (values ('a', 0, 0.0), ('b', 1, 0.0)) t(user_id, segment_id, distance)"
    )
    published = con.execute(
        "select segment_id, rank, item_id, score from ("
        + load_sql("segments/seg_segment_recommendations")
        + ") where segment_id >= 0",
        {"n_items": 5, "run_id": "r"},
    ).fetchall()
    train = interaction_matrix(pl.from_arrow(con.sql("select * from fct_interactions").to_arrow_table()))
    labels = np.array([0, 1])  # a, b: the rows of train.users
    ranked = ranked_segment_items(train, labels, n_segments=2, length=5)
    evaluated = [(s, r, train.items[i], round(score, 6)) for s, i, score, r in ranked.iter_rows()]
    assert published == evaluated == [
        (0, 1, "i2", 1.0), (0, 2, "i1", 1.0), (1, 1, "i2", 1.0), (1, 2, "i3", 1.0),
    ]  # fmt: skip
    scores = segment_item_scores(train, labels)
    assert train.items.tolist() == ["i1", "i2", "i3", "i4"] and scores[:, 3].tolist() == [0.0, 0.0]
    assert train.matrix[1, 3] == 1  # b has still seen i4: it is not recommended back to b


def test_event_types_the_features_do_not_know_are_named_with_what_they_likely_mean():
    import pyarrow as pa

    from tasks.features.interactions import event_type_notes

    types = ["view"] * 10 + ["transaction"] * 2 + ["addtocart"] * 3 + ["wishlist", "views", "add'to'cart"]
    assert event_type_notes(pa.table({"event_type": types}), other_weight=0.5) == [
        "event types the features do not know: addtocart (3 events), transaction (2 events), add'to'cart (1 "
        "event), views (1 event), wishlist (1 event); each weighs 0.5 (the weight of any other type), and counts "
        "as no view, cart or purchase (funnel, monetary). Known: view, click, search, add_to_cart, "
        "remove_from_cart, purchase, return, rate, tag, play, like, share. If they mean add_to_cart, purchase, "
        "add_to_cart, view, map them in the source spec: event_type = \"CASE lower(trim(col)) WHEN 'addtocart' "
        "THEN 'add_to_cart' WHEN 'transaction' THEN 'purchase' WHEN 'add''to''cart' THEN 'add_to_cart' WHEN "
        "'views' THEN 'view' ELSE col END\" (col: the column mapped now; the types listed in event_types, and "
        "[validation] ranges by type, are those after the mapping)."
    ]
    assert event_type_notes(pa.table({"event_type": ["view", "rate", "play"]})) == []


@pytest.mark.parametrize(
    ("name", "meant"),
    [("AddToCart", "add_to_cart"), ("transaction", "purchase"), ("purchases", "purchase"), ("viewed", "view"),
     ("liked", "like"), ("searches", "search"), ("bought", "purchase"), ("wishlist", None)],
)  # fmt: skip
def test_an_unknown_event_type_is_read_as_the_known_one_it_spells(name, meant):
    from tasks.features.interactions import _canonical_guess

    assert _canonical_guess(name) == meant


def test_the_known_event_types_are_those_the_feature_sql_names():
    import re

    from tasks.features.interactions import KNOWN_EVENT_TYPES

    sql = load_sql("features/fct_interactions")
    assert set(re.findall(r"when '(\w+)' then", sql)) == set(KNOWN_EVENT_TYPES)


def test_day_parts_and_weekends_are_measured_in_the_sources_time_zone():
    """Late on Friday evenings in New York is early on Saturdays in UTC: the same events read as night owls
    of the weekend in UTC, and as Friday evenings by the users' clock. A model keeps its zone: a transform
    (scoring newcomers) measures them the same way."""
    import pyarrow as pa

    from tasks.features.events import as_events_table
    from tasks.features.user_features import FeatureModel

    fridays = [datetime(2024, 1, 6, 2, 30), datetime(2024, 1, 13, 3), datetime(2024, 7, 13, 1, 30)]  # UTC
    events = as_events_table(
        pa.table(
            {
                "user_id": ["owl"] * 3 + ["noon"] * 3,
                "item_id": ["i1", "i2", "i3"] * 2,
                "event_type": ["view"] * 6,
                "ts": fridays
                + [datetime(2024, 1, 3, 12), datetime(2024, 1, 10, 12), datetime(2024, 7, 10, 12)],
            }
        )
    )
    items = pa.table({"item_id": ["i1", "i2", "i3"]})
    columns = ["share_night", "share_evening", "share_late", "share_weekend"]

    def shares(frame: pl.DataFrame) -> dict[str, list[float]]:
        return frame.sort("user_id").select("user_id", *columns).to_dict(as_series=False)

    _, utc = FeatureModel.fit(events, items, InteractionWeights())
    model, local = FeatureModel.fit(events, items, InteractionWeights(), timezone="America/New_York")
    assert shares(utc.frame)["share_night"] == [0.0, 1.0] and shares(utc.frame)["share_weekend"] == [0.0, 1.0]
    # 21:30 and 22:00 EST in January, 21:30 EDT in July: the evening part is 16-20, late 20-24.
    assert shares(local.frame) == {
        "user_id": ["noon", "owl"],
        "share_night": [0.0, 0.0],
        "share_evening": [0.0, 0.0],
        "share_late": [0.0, 1.0],
        "share_weekend": [0.0, 0.0],
    }
    newcomer = events.filter(pa.compute.equal(events["user_id"], "owl"))
    assert shares(model.transform(newcomer).frame)["share_late"] == [1.0]


def test_an_events_own_time_zone_is_its_users_clock_before_the_runs():
    """A global shop's export carries each user's zone (Segment's context.timezone): a Tokyo user's 13:00 UTC
    is 22:00 on their clock, whatever the run's zone; an event without one is measured by the run's."""
    import pyarrow as pa

    from tasks.features.events import as_events_table
    from tasks.features.user_features import FeatureModel

    events = as_events_table(
        pa.table(
            {
                "user_id": ["tokyo", "tokyo", "offset", "plain"],
                "item_id": ["i1", "i2", "i1", "i2"],
                "event_type": ["view"] * 4,
                "ts": [
                    datetime(2024, 1, 3, 13),
                    datetime(2024, 7, 3, 13),
                    datetime(2024, 1, 3, 13),
                    datetime(2024, 1, 3, 13),
                ],
                "timezone": ["Asia/Tokyo", "asia/tokyo", "-05:30", None],
            }
        )
    )
    model, features = FeatureModel.fit(
        events, pa.table({"item_id": ["i1", "i2"]}), InteractionWeights(), timezone="America/New_York"
    )
    parts = features.frame.sort("user_id").select("user_id", "share_early", "share_morning", "share_late")
    # offset: 07:30 (early morning); plain: 08:00 in New York (morning); tokyo: 22:00 (late evening)
    assert parts.rows() == [("offset", 1.0, 0.0, 0.0), ("plain", 0.0, 1.0, 0.0), ("tokyo", 0.0, 0.0, 1.0)]
    newcomer = events.filter(pa.compute.equal(events["user_id"], "tokyo"))
    assert model.transform(newcomer).frame["share_late"].to_list() == [1.0]
    with pytest.raises(ValueError, match=r"an event's timezone is 'Mars/Olympus': give an IANA name"):
        model.transform(events.set_column(9, "timezone", pa.array(["Mars/Olympus"] * 4)))


def test_active_days_are_counted_by_the_users_clock():
    """Two visits on one UTC date, 02:00 and 20:00, are two evenings in New York: two active days there."""
    import pyarrow as pa

    from tasks.features.events import as_events_table
    from tasks.features.user_features import FeatureModel

    events = as_events_table(
        pa.table(
            {
                "user_id": ["a", "a", "b", "b"],
                "item_id": ["i1", "i2", "i1", "i2"],
                "event_type": ["view"] * 4,
                "ts": [datetime(2024, 1, 6, 2), datetime(2024, 1, 6, 20)] * 2,
            }
        )
    )
    items = pa.table({"item_id": ["i1", "i2"]})
    _, utc = FeatureModel.fit(events, items, InteractionWeights())
    _, local = FeatureModel.fit(events, items, InteractionWeights(), timezone="America/New_York")
    assert utc.frame["active_days"].to_list() == [1, 1]
    assert local.frame["active_days"].to_list() == [2, 2]
