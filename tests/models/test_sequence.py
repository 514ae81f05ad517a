"""The `sequence` embedder on a small demo shop: one epoch trains to finite unit vectors, the losses reach the
logger, a user the fit never saw is one forward pass (a copy of a fitted user gets that user's vector), items
and event types the fit never saw are the unknown token, save/load and seeds reproduce vectors; and the
windows the model trains on."""

from __future__ import annotations

import csv
import pickle
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pytorch_lightning.loggers import CSVLogger

from models.sequence import last_windows, training_windows
from tasks.embed.base import FitOptions
from tasks.embed.sequence import SequenceEmbedder, SequenceSettings, item_steps
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.ingest.demo import DemoConfig, write_demo_data
from tasks.segment.settings import SegmentSettings

# The real settings, shrunk: short windows, narrow vectors, one thread (the test machine's cores are shared).
TINY = SequenceSettings(
    max_len=8, dim=8, n_layers=1, n_heads=2, n_negatives=16, windows_per_epoch=64, batch_size=32,
    max_epochs=1, n_threads=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The fitted feature model and features of a 60-user demo shop, and its events."""
    out = tmp_path_factory.mktemp("shop")
    write_demo_data(out, DemoConfig(n_users=60, seed=3, items_per_category=4))
    events = as_events_table(pl.read_csv(out / "events.csv", try_parse_dates=True))
    items = pl.read_csv(out / "items.csv").select("item_id", "category").to_arrow()
    model, features = FeatureModel.fit(events, items, SegmentSettings().weights)
    return model, features, events


@pytest.fixture(scope="module")
def trained(shop, tmp_path_factory) -> SequenceEmbedder:
    _, features, _ = shop
    logger = CSVLogger(tmp_path_factory.mktemp("logs"), name="sequence")
    return SequenceEmbedder(0, TINY, logger=logger).fit(features)


def copy_of(events, user_id: str, new_id: str) -> pl.DataFrame:
    return (
        pl.from_arrow(events)
        .filter(pl.col("user_id") == user_id)
        .with_columns(pl.lit(new_id).alias("user_id"))
    )


def test_one_epoch_gives_finite_unit_vectors_for_every_user_and_logs_both_losses(shop, trained):
    _, features, _ = shop
    embedding = trained.transform(features)
    assert embedding.name == "sequence" and list(embedding.user_ids) == list(features.users)
    assert embedding.vectors.shape == (60, 8) and embedding.vectors.dtype == np.float32
    assert np.isfinite(embedding.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(embedding.vectors, axis=1), 1.0, rtol=1e-5)
    assert trained.training["epochs"] == 1
    (metrics,) = Path(trained.logger.log_dir).glob("metrics.csv")
    logged = {
        name for row in csv.DictReader(metrics.open()) for name in ("train/loss", "val/loss") if row.get(name)
    }
    assert logged == {"train/loss", "val/loss"}


def test_a_copy_of_a_fitted_user_gets_that_users_vector_without_training(shop, trained):
    model, features, events = shop
    original = trained.transform(features)
    for row in (0, 17, 59):
        user = features.users[row]
        placed = trained.transform(model.transform(copy_of(events, user, "newcomer")))
        assert list(placed.user_ids) == ["newcomer"]
        np.testing.assert_allclose(placed.vectors[0], original.vectors[row], atol=1e-5)


def test_items_and_event_types_the_fit_never_saw_are_the_unknown_token(shop, trained):
    model, features, events = shop
    user = features.users[0]
    stranger = copy_of(events, user, "stranger").with_columns(
        pl.lit("never-seen").alias("item_id"), pl.lit("share").alias("event_type")
    )
    placed = trained.transform(model.transform(stranger))
    assert placed.vectors.shape == (1, 8) and np.isfinite(placed.vectors).all()
    _, items, types = trained._tokens(
        item_steps(as_events_table(stranger)), np.array(["stranger"], dtype=object)
    )
    assert set(items) == {1} and set(types) == {0}


def test_a_saved_and_loaded_embedder_gives_identical_vectors_and_holds_no_trainer(shop, trained, tmp_path):
    _, features, _ = shop
    loaded = SequenceEmbedder.load(trained.save(tmp_path / "sequence.pkl"))
    np.testing.assert_array_equal(loaded.transform(features).vectors, trained.transform(features).vectors)
    kept = pickle.dumps(loaded)
    assert loaded.logger is None and b"Trainer" not in kept and b"DataLoader" not in kept


def test_the_same_seed_gives_the_same_vectors_and_another_seed_others(shop, trained):
    _, features, _ = shop
    again = SequenceEmbedder(0, TINY).fit(features).transform(features).vectors
    other = SequenceEmbedder(1, TINY).fit(features).transform(features).vectors
    np.testing.assert_array_equal(trained.transform(features).vectors, again)
    assert not np.allclose(again, other)


def test_steps_follow_time_and_one_items_view_cart_purchase_is_one_step():
    start = datetime(2024, 1, 1)
    events = as_events_table(
        pl.DataFrame(
            {
                "user_id": ["u"] * 5,
                "item_id": ["b", "a", "a", "a", "c"],
                "event_type": ["view", "view", "add_to_cart", "purchase", "view"],
                "ts": [start + timedelta(hours=h) for h in (9, 1, 2, 3, 5)],  # given out of time order
            }
        )
    )
    steps = item_steps(events)
    assert steps["item_id"].to_list() == ["a", "c", "b"]
    assert steps["event_type"].to_list() == ["purchase", "view", "view"]


def test_training_windows_cut_a_history_from_the_latest_backwards_left_padded():
    # User 0 has items 11..17 (7 steps), user 1 has 21, 22; windows of 3 targets.
    users = np.array([0] * 7 + [1] * 2)
    items = np.array([11, 12, 13, 14, 15, 16, 17, 21, 22])
    types = np.ones_like(items)
    inputs, _, targets = training_windows(users, items, types, n_users=2, max_len=3, max_windows=5)
    # The first step has no predecessor, so user 0 has 6 targets: two windows; user 1 one target.
    np.testing.assert_array_equal(targets, [[15, 16, 17], [12, 13, 14], [0, 0, 22]])
    np.testing.assert_array_equal(inputs, [[14, 15, 16], [11, 12, 13], [0, 0, 21]])
    capped, _, _ = training_windows(users, items, types, n_users=2, max_len=3, max_windows=1)
    np.testing.assert_array_equal(capped, [[14, 15, 16], [0, 0, 21]])
    latest, _ = last_windows(users, items, types, n_users=2, max_len=3)
    np.testing.assert_array_equal(latest, [[15, 16, 17], [0, 21, 22]])


def test_an_epoch_of_a_small_shop_is_a_few_batches_of_whole_passes_not_ten_thousand_windows(shop):
    """The default `windows_per_epoch` is for large data; on a few hundred windows it made an epoch of 79
    batches (26 passes), every fit ran into the time budget, and the same seed gave other vectors."""
    _, features, _ = shop
    embedder = SequenceEmbedder(0, SequenceSettings(max_len=8, dim=8, n_layers=1, batch_size=64))
    data, _ = embedder.training_parts(features)
    n_windows = len(data.train_windows[0])
    assert n_windows < 8 * 64
    assert len(data.train_dataloader().dataset) == 8  # MIN_BATCHES_PER_EPOCH, whole passes
    large = SequenceEmbedder(
        0, SequenceSettings(max_len=8, dim=8, n_layers=1, batch_size=4, windows_per_epoch=40)
    )
    data, _ = large.training_parts(features)
    assert len(data.train_dataloader().dataset) == 10  # a part of the windows per epoch, as configured


def test_under_the_runs_budget_a_small_shop_trains_its_epochs_in_seconds_and_reproduces(shop):
    """Default sizes, `--max-epochs 4` and a 20 s budget: the fit ends by its epochs, not by the clock,
    so the same seed gives the same vectors. Before, an epoch of a small shop was 10,000 windows on torch's
    threads fighting over busy cores: a fit ran out of budget within 2 epochs and the vectors changed."""
    _, features, _ = shop
    options = FitOptions(max_epochs=4, time_budget_s=20.0, accelerator="cpu")
    first, second = (SequenceEmbedder(0).configure(options).fit(features) for _ in range(2))
    assert first.training["epochs"] == second.training["epochs"] == 4
    assert first.training["seconds"] < 10.0
    np.testing.assert_array_equal(first.transform(features).vectors, second.transform(features).vectors)
