"""The fitted segmenter on the demo shop: every embedding and clusterer end to end, save and reload, and
assigning users the fit never saw (copies of typical members, unseen items and categories)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score

from tasks.features.events import as_events_table
from tasks.features.user_features import MAX_CATEGORY_COLUMNS, OTHER_CATEGORY, FeatureModel
from tasks.ingest.demo import DemoConfig, write_demo_data
from tasks.segment.segmenter import Segmenter, fit_segmenter
from tasks.segment.settings import SegmentSettings


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[pa.Table, pa.Table, pl.DataFrame]:
    """The demo shop's events, items and planted segments (300 users, 9 planted segments and noise)."""
    out = tmp_path_factory.mktemp("shop")
    write_demo_data(out, DemoConfig(n_users=300, seed=7))
    events = as_events_table(pl.read_csv(out / "events.csv", try_parse_dates=True))
    items = pl.read_csv(out / "items.csv").select("item_id", "category").to_arrow()
    truth = pl.read_csv(out / "users.csv").select("user_id", "segment")
    return events, items, truth


@pytest.fixture(scope="module")
def fitted(shop) -> Segmenter:
    events, items, _ = shop
    return fit_segmenter(events, items, SegmentSettings(), 9, micro_k=12)


def planted_ari(assignments: pl.DataFrame, truth: pl.DataFrame) -> float:
    joined = assignments.join(truth.filter(pl.col("segment") >= 0), on="user_id")  # noise users left out
    return adjusted_rand_score(joined["segment"], joined["segment_id"])


@pytest.mark.parametrize(
    ("embedding", "clusterer", "min_ari"),
    [
        ("combined", "kmeans", 0.9),
        ("behaviour", "kmeans", 0.8),
        ("svd", "kmeans", 0.4),  # taste only: the three pairs that share a taste merge
        ("combined", "agglomerative", 0.85),
        ("combined", "hdbscan", 0.4),
    ],
)
def test_each_embedding_and_clusterer_finds_the_planted_segments(shop, embedding, clusterer, min_ari):
    events, items, truth = shop
    segmenter = fit_segmenter(events, items, SegmentSettings(embedding=embedding, clusterer=clusterer), 9)
    assignments = segmenter.assign(events)
    assert assignments.height == 300 and assignments["user_id"].n_unique() == 300
    assert planted_ari(assignments, truth) >= min_ari
    assigned = assignments.filter(pl.col("segment_id") >= 0)
    assert assigned["distance"].min() >= 0 and assigned["distance"].is_finite().all()


def test_a_reloaded_segmenter_assigns_exactly_as_the_fitted_one(fitted, shop, tmp_path):
    events, _, _ = shop
    reloaded = Segmenter.load(fitted.with_labels({0: "zero"}).save(tmp_path / "segmenter.pkl"))
    assert reloaded.segment_labels == {0: "zero"} and reloaded.k == fitted.k == 9
    # From a pandas frame, as MLflow's pyfunc hands it over: the same segments and distances.
    again = reloaded.assign(pl.from_arrow(events).to_pandas())
    assert again.equals(fitted.assign(events))
    assert reloaded.memberships(events).equals(fitted.memberships(events))


def test_a_new_user_who_copies_a_typical_member_lands_in_that_segment(fitted, shop):
    events, _, _ = shop
    assignments = fitted.assign(events)
    frame = pl.from_arrow(events)
    for segment_id in range(fitted.k):
        typical = assignments.filter(pl.col("segment_id") == segment_id).sort("distance")["user_id"][0]
        copy = frame.filter(pl.col("user_id") == typical).with_columns(pl.lit("newcomer").alias("user_id"))
        placed = fitted.assign(copy)
        assert placed["segment_id"].to_list() == [segment_id]


def test_a_user_with_unseen_items_and_categories_gets_a_segment(fitted):
    new = pl.DataFrame(
        {
            "user_id": ["stranger"] * 3,
            "item_id": ["never-seen-1", "never-seen-2", "never-seen-1"],
            "event_type": ["view", "view", "purchase"],
            "ts": [datetime(2030, 1, 1, 8), datetime(2030, 1, 2, 9), datetime(2030, 1, 2, 9, 5)],
            "item_category": ["astronomy", "astronomy", "astronomy"],
        }
    )  # no value, quantity or session_id: optional columns may be absent
    placed = fitted.assign(new)
    assert placed["user_id"].to_list() == ["stranger"]
    assert 0 <= placed["segment_id"][0] < fitted.k and np.isfinite(placed["distance"][0])


def test_events_without_a_required_column_are_refused_by_name(fitted):
    with pytest.raises(ValueError, match="events need the columns ts"):
        fitted.assign(pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": ["view"]}))


def test_the_feature_model_keeps_the_50_most_widespread_categories_and_pools_the_rest():
    rows = [("u" + str(i % 3), f"x{i}", "view", datetime(2024, 1, 1, i % 24), f"c{i}") for i in range(70)]
    events = as_events_table(
        pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts", "item_category"], orient="row")
    )
    model, features = FeatureModel.fit(
        events, pa.table({"item_id": [], "category": []}), SegmentSettings().weights
    )
    category_columns = [c for c in features.frame.columns if c.startswith("cat:")]
    assert len(category_columns) == MAX_CATEGORY_COLUMNS + 1 and OTHER_CATEGORY in category_columns
    assert features.frame.height == 3 and list(model.columns) == features.frame.columns[1:]
    # A later user's features have the same columns in the same order, whatever categories they touch.
    later = model.transform(events.slice(0, 5))
    assert later.frame.columns == features.frame.columns


def test_recency_is_measured_from_the_fitted_reference_time(fitted, shop):
    events, _, _ = shop
    frame = pl.from_arrow(events)
    last = frame["ts"].max()
    late = frame.filter(pl.col("user_id") == frame["user_id"][0]).with_columns(
        pl.lit("late").alias("user_id"), (pl.col("ts") + pl.duration(days=30)).alias("ts")
    )
    activity = fitted.features.transform(late).tables["fct_user_activity"]
    assert fitted.features.end_ts == last
    assert activity["recency_days"].to_list() == [0.0]  # events after the reference time are not negative


def test_a_history_that_follows_the_fit_has_the_frequency_of_the_same_history_within_it(fitted, shop):
    """A user scored later whose first event follows the fit's last: frequency is active days over their own
    span, as for a fitted user whose last event is the reference time (it was active days over one day: up
    to 41 on MovieLens against at most 1.46 for fitted users, so every such user looked heavy)."""
    events, _, _ = shop
    frame = pl.from_arrow(events)
    last = frame.group_by("user_id").agg(pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"))
    user = last.filter(pl.col("last") == frame["ts"].max()).sort("user_id")["user_id"][0]
    history = frame.filter(pl.col("user_id") == user)
    days = (history["ts"].max() - history["ts"].min()).days + 7  # whole days: the same active dates
    later = history.with_columns(pl.lit("later").alias("user_id"), pl.col("ts") + pl.duration(days=days))
    fitted_activity = fitted.features.transform(history.to_arrow()).tables["fct_user_activity"]
    later_activity = fitted.features.transform(later.to_arrow()).tables["fct_user_activity"]
    assert later_activity["frequency"].to_list() == pytest.approx(fitted_activity["frequency"].to_list())
    assert 0 < later_activity["frequency"][0] <= 1


def test_a_history_moved_later_and_measured_as_of_the_latest_event_is_the_same_user(fitted, shop):
    """`segflow score` measures users as of the warehouse's latest event, as a retrain would: a user's whole
    history moved by whole weeks, measured as of the fit's end moved the same, has the original's recency,
    frequency and segment. As of the fit's end (the default) it is as recent as can be, and on MovieLens 42
    of 45 users first seen after a fit went to one segment that way (spread over 5 as of the latest event)."""
    events, _, _ = shop
    frame = pl.from_arrow(events)
    ends = frame.group_by("user_id").agg(pl.col("ts").max().alias("last")).sort("last", "user_id")
    user = ends["user_id"][0]  # the user whose last event is the earliest: the largest recency
    history = frame.filter(pl.col("user_id") == user)
    shift = timedelta(weeks=10)
    moved = history.with_columns(pl.lit("moved").alias("user_id"), pl.col("ts") + shift)
    end = fitted.features.end_ts
    original = fitted.features.transform(history.to_arrow()).tables["fct_user_activity"]
    as_of = fitted.features.transform(moved.to_arrow(), as_of=end + shift).tables["fct_user_activity"]
    default = fitted.features.transform(moved.to_arrow()).tables["fct_user_activity"]
    for column in ("recency_days", "frequency"):
        assert as_of[column].to_list() == pytest.approx(original[column].to_list())
    assert original["recency_days"][0] > 7 and default["recency_days"].to_list() == [0.0]
    assert (
        fitted.assign(moved.to_arrow(), as_of=end + shift)["segment_id"].to_list()
        == fitted.assign(history.to_arrow())["segment_id"].to_list()
    )


def test_the_combined_embedding_is_the_behaviour_block_beside_the_svd_block(fitted, shop):
    events, _, _ = shop
    features = fitted.features.transform(events)
    combined = fitted.embedder.transform(features).vectors
    behaviour = fitted.embedder.behaviour.transform(features).vectors
    svd = fitted.embedder.svd.transform(features).vectors
    assert combined.shape == (300, behaviour.shape[1] + svd.shape[1]) and svd.shape[1] == 32
    np.testing.assert_allclose(combined[:, behaviour.shape[1] :], svd, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(svd, axis=1), 1.0, rtol=1e-5)  # svd rows are L2-normalised
    # The standardised behaviour block: mean 0 and variance 1 per column over the fit's users.
    np.testing.assert_allclose(behaviour.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(behaviour.std(axis=0), 1.0, rtol=1e-3)


def test_memberships_weigh_each_users_nearest_micro_segments_to_1(fitted, shop):
    events, _, _ = shop
    memberships = fitted.memberships(events)
    per_user = memberships.group_by("user_id").agg(pl.len().alias("n"), pl.col("weight").sum().alias("total"))
    assert per_user.height == 300 and per_user["n"].to_list() == [3] * 300
    assert per_user["total"].is_between(0.9999, 1.0001).all()
    # Heaviest first, and the heaviest is the user's own (nearest) micro-segment.
    first = memberships.group_by("user_id", maintain_order=True).first().sort("user_id")
    taste = fitted.micro.embed(fitted.features.transform(events))
    nearest = fitted.micro.clusterer.predict(taste.vectors)[0]
    assert first["micro_segment_id"].to_list() == nearest.tolist()


def test_micro_tables_give_every_user_a_blended_list_of_unseen_items(fitted, shop):
    from tasks.segment.micro import micro_tables

    events, _, _ = shop
    features = fitted.features.transform(events)
    taste = fitted.micro.embed(features)
    tables = micro_tables(features, fitted.micro, taste, fitted.assign(events), 100, 20)
    lists = tables["user_recommendations"]
    assert lists.group_by("user_id").len()["len"].to_list() == [20] * 300
    seen = pl.from_arrow(events).select("user_id", "item_id").unique()
    assert lists.join(seen, on=["user_id", "item_id"]).height == 0
    ranks = (
        tables["micro_segment_recommendations"]
        .group_by("micro_segment_id")
        .agg(pl.col("rank").max(), pl.len())
    )
    assert (ranks["rank"] == ranks["len"]).all()
    assert tables["micro_segments"]["size"].sum() == 300
    # The saved segmenter makes the same lists for the same users (as scoring and `segflow user` use it).
    assert fitted.recommend(events).sort("user_id", "rank").equals(lists)


def test_lists_made_a_block_of_users_at_a_time_are_the_lists_made_at_once(fitted, shop, monkeypatch):
    from tasks.segment import micro

    events, _, _ = shop
    at_once = fitted.recommend(events)
    monkeypatch.setattr(micro, "RECOMMEND_CHUNK", 7)  # 300 users: 43 blocks, the last of 6
    assert fitted.recommend(events).equals(at_once)
    assert at_once.height == 300 * 20


def test_a_segmenter_saved_without_micro_lists_asks_for_a_new_run(fitted, shop, tmp_path):
    import dataclasses

    from tasks.segment.micro import MicroSegments
    from tasks.segment.segmenter import SegmentationError

    events, _, _ = shop
    older = object.__new__(MicroSegments)  # as an older segflow pickled it: no `lists`
    older.__dict__.update({k: v for k, v in fitted.micro.__dict__.items() if k != "lists"})
    path = dataclasses.replace(fitted, micro=older).save(tmp_path / "older.pkl")
    with pytest.raises(SegmentationError, match=r"saved by an older segflow.*run `segflow run`"):
        Segmenter.load(path).recommend(events)


def test_segments_under_the_minimum_size_are_merged_and_the_summary_says_so():
    """Helper 27's Mixpanel run printed `K = 21 is the usefulness floor` above 16 segments, with no word of
    the 5 merged: the note says how many of the K were merged, and why."""
    from tasks.embed.base import Embedding
    from tasks.segment.segmenter import fit_clusterer, merged_note

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vectors = np.vstack([c + rng.normal(0, 0.5, (n, 2)) for c, n in zip(centres, (60, 60, 6), strict=True)])
    embedding = Embedding(
        "test", np.array([f"u{i}" for i in range(len(vectors))]), vectors.astype(np.float32)
    )
    settings = SegmentSettings(min_segment_size=20)
    clusterer = fit_clusterer(embedding, settings, 3)
    assert clusterer.k == 2
    assert merged_note(3, clusterer, len(vectors), settings) == [
        "1 of the K = 3 segments had fewer than 20 users (--min-segment-size) and was merged into its "
        "nearest: 2 published"
    ]
    assert merged_note(2, clusterer, len(vectors), settings) == []


def test_a_user_whose_items_nobody_knows_gets_the_largest_micro_segments_and_no_made_up_taste(fitted, shop):
    """They have no taste vector, so no micro-segment is nearer than another: they belonged to the three
    whose centres lie nearest the origin, and at personal weight 1 every item of their list scored 1.000 (their
    own taste, all zeros, scaled to 0..1)."""
    events, _, _ = shop
    stranger = as_events_table(
        pl.DataFrame({"user_id": ["stranger"], "item_id": ["not-in-the-shop"], "event_type": ["view"],
                      "ts": [datetime(2024, 3, 1, 12)]})
    )  # fmt: skip
    sizes = np.bincount(fitted.micro.clusterer.labels_)
    largest = np.argsort(-sizes, kind="stable")[:3]
    _, memberships, lists = replace(fitted, micro=fitted.micro.with_personal_weight(1.0)).score(stranger)
    assert memberships["micro_segment_id"].to_list() == largest.tolist()
    assert memberships["weight"].to_list() == pytest.approx(sizes[largest] / sizes[largest].sum(), abs=1e-6)
    scores = lists["score"].to_list()  # the blend of those lists, best first
    assert (
        lists.height == 20 and scores[0] == 1.0 and scores == sorted(scores, reverse=True) and scores[-1] < 1
    )


def test_settings_saved_before_a_field_existed_load_with_its_default():
    """A segmenter saved by an older segflow holds settings without the fields added since (timezone): they
    load with the field's default instead of raising AttributeError when read (helper 35)."""
    import pickle

    old = SegmentSettings(k=5, timezone="Asia/Tokyo")
    del old.__dict__["timezone"]  # as pickled before the field existed
    loaded = pickle.loads(pickle.dumps(old))
    assert (loaded.k, loaded.timezone) == (5, None)
    assert pickle.loads(pickle.dumps(SegmentSettings(timezone="Asia/Tokyo"))).timezone == "Asia/Tokyo"
