"""The `lightgcn` embedder on a small demo shop: one epoch trains to finite unit vectors, the losses reach the
logger, a user the fit never saw is folded in from the item vectors, save/load and seeds reproduce vectors,
and 0 layers (plain MF-BPR) works."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from models.lightgcn import LightGCNData, normalized_adjacency
from tasks.embed.lightgcn import LightGCNEmbedder, LightGCNSettings
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.ingest.demo import DemoConfig, write_demo_data
from tasks.segment.settings import SegmentSettings

# The real settings, shrunk: narrow vectors, one thread (the test machine's cores are shared).
TINY = LightGCNSettings(dim=8, batch_size=256, max_epochs=1, n_threads=1)
NO_CATALOGUE = pa.table({"item_id": pa.array([], pa.string())})


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
def trained(shop) -> LightGCNEmbedder:
    """Trained long enough that the user vectors have moved well away from their random start."""
    _, features, _ = shop
    return LightGCNEmbedder(0, TINY.model_copy(update={"max_epochs": 30, "patience": 30})).fit(features)


def copy_of(events, user_id: str, new_id: str) -> pl.DataFrame:
    return (
        pl.from_arrow(events)
        .filter(pl.col("user_id") == user_id)
        .with_columns(pl.lit(new_id).alias("user_id"))
    )


def test_one_epoch_gives_finite_unit_vectors_for_every_user_and_logs_both_losses(shop, tmp_path):
    _, features, _ = shop
    embedder = LightGCNEmbedder(0, TINY).fit(features, logger=CSVLogger(tmp_path, name="lightgcn"))
    embedding = embedder.transform(features)
    assert embedding.name == "lightgcn" and list(embedding.user_ids) == list(features.users)
    assert embedding.vectors.shape == (60, 8) and embedding.vectors.dtype == np.float32
    assert np.isfinite(embedding.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(embedding.vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.training["epochs"] == 1
    (metrics,) = tmp_path.glob("lightgcn/*/metrics.csv")
    logged = {
        name for row in csv.DictReader(metrics.open()) for name in ("train/loss", "val/loss") if row.get(name)
    }
    assert logged == {"train/loss", "val/loss"}


def test_a_user_the_fit_never_saw_is_folded_in_close_to_the_fitted_original(shop, trained):
    model, features, events = shop
    original = trained.transform(features)
    first = features.users[0]
    placed = trained.transform(model.transform(copy_of(events, first, "newcomer")))
    assert list(placed.user_ids) == ["newcomer"]
    cosine = float(placed.vectors[0] @ original.vectors[0])
    assert cosine > 0.9
    # Every user folded in, as if the fit had never seen them, stays close to their trained vector.
    folded = trained.fold_in(features)
    folded /= np.linalg.norm(folded, axis=1, keepdims=True)
    assert np.median((folded * original.vectors).sum(axis=1)) > 0.9


def test_a_user_with_only_items_the_fit_never_saw_gets_a_finite_vector(shop, trained):
    model, _, events = shop
    stranger = copy_of(events, str(pl.from_arrow(events)["user_id"][0]), "stranger").with_columns(
        pl.lit("never-seen").alias("item_id")
    )
    placed = trained.transform(model.transform(stranger))
    assert placed.vectors.shape == (1, 8) and np.isfinite(placed.vectors).all()


def test_a_saved_and_loaded_embedder_gives_identical_vectors_and_holds_no_trainer(shop, trained, tmp_path):
    _, features, _ = shop
    loaded = LightGCNEmbedder.load(trained.save(tmp_path / "lightgcn.pkl"))
    np.testing.assert_array_equal(loaded.transform(features).vectors, trained.transform(features).vectors)
    kept = pickle.dumps(loaded)
    assert b"Trainer" not in kept and b"DataLoader" not in kept
    # The network rebuilds from its saved weights.
    assert torch.equal(loaded.module().embedding.weight, trained.module().embedding.weight)


def test_the_same_seed_gives_the_same_vectors_and_another_seed_others(shop):
    _, features, _ = shop
    first = LightGCNEmbedder(0, TINY).fit(features).transform(features).vectors
    again = LightGCNEmbedder(0, TINY).fit(features).transform(features).vectors
    other = LightGCNEmbedder(1, TINY).fit(features).transform(features).vectors
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_zero_layers_is_matrix_factorisation_with_bpr(shop):
    _, features, _ = shop
    embedder = LightGCNEmbedder(0, TINY.model_copy(update={"n_layers": 0})).fit(features)
    vectors = embedder.transform(features).vectors
    assert vectors.shape == (60, 8) and np.isfinite(vectors).all()
    # Without propagation a user's final vector is their base embedding.
    base = embedder.module().embedding.weight.detach().numpy()[:60]
    np.testing.assert_allclose(vectors, base / np.linalg.norm(base, axis=1, keepdims=True), rtol=1e-5)


def test_the_adjacency_is_symmetric_and_normalised_by_weighted_degree():
    users, items, weights = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1.0, 3.0, 2.0])
    dense = normalized_adjacency(2, 2, users, items, weights).to_dense().numpy()
    degree = np.array([4.0, 2.0, 1.0, 5.0])  # users 0, 1, then items 0, 1
    expected = np.zeros((4, 4))
    for u, i, w in zip(users, items, weights, strict=True):
        expected[u, 2 + i] = expected[2 + i, u] = w / np.sqrt(degree[u] * degree[2 + i])
    np.testing.assert_allclose(dense, expected, rtol=1e-6)


def test_a_repeated_pair_counts_as_one_edge_with_the_summed_weight():
    repeated = normalized_adjacency(
        2, 2, np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), np.array([1.0, 2.0, 3.0, 2.0])
    )
    once = normalized_adjacency(2, 2, np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([3.0, 3.0, 2.0]))
    assert repeated.values().shape == once.values().shape == (6,)
    np.testing.assert_array_equal(repeated.to_dense().numpy(), once.to_dense().numpy())


def test_validation_takes_at_most_one_edge_per_user_and_leaves_every_user_a_training_edge():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), rng.integers(1, 6, size=50))
    items = rng.integers(0, 20, size=len(users))
    data = LightGCNData(50, 20, users, items, np.ones(len(users)), val_fraction=0.5, seed=0)
    data.setup()
    val_users = data.val_edges[0].numpy()
    assert len(val_users) == len(np.unique(val_users)) > 0
    assert set(data.train_edges[0].numpy()) == set(users)
    assert len(data.train_edges[0]) + len(val_users) == len(users)


def test_on_a_graph_past_the_epochs_propagation_budget_an_epoch_comes_in_fewer_larger_batches():
    """Every step propagates over the whole graph: at 50,000 users an epoch of 98 batches of 2,048 edges took
    67 s, so the run's 20 s budget stopped the fit inside its first epoch, wherever the machine's speed said.
    Capping steps x edges keeps an epoch's cost bounded, and the fit is bounded by its epochs."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(100), 10)
    items = rng.integers(0, 40, size=len(users))
    small = LightGCNData(100, 40, users, items, np.ones(len(users)), batch_size=64, val_fraction=0.0)
    small.setup()
    assert len(small.train_dataloader().dataset) == 16  # ceil(1000 / 64): within the budget, as configured
    capped = LightGCNData(
        100,
        40,
        users,
        items,
        np.ones(len(users)),
        batch_size=64,
        val_fraction=0.0,
        graph_edges_per_epoch=5_000,
    )
    capped.setup()
    batches = [batch for group in capped.train_dataloader() for batch in group]  # lists of mini-batches
    assert len(capped.train_edges[0]) == 999  # one edge is kept for val/loss
    assert [len(batch[0]) for batch in batches] == [
        200,
        200,
        200,
        200,
        199,
    ]  # 5,000 // 999: 5 steps, all edges
    assert sorted(torch.cat([batch[1] for batch in batches]).tolist()) == sorted(
        capped.train_edges[1].tolist()
    )


def test_users_whose_every_event_weighs_nothing_get_the_zero_vector_as_when_folded_in(shop):
    """Two users who only returned things (weight 0: no edge in the graph) have no taste to learn. They kept
    their random starting vector at unit length, so identical histories landed in different segments, and
    the same history as a new user (folded in: zero) in another one again."""
    _, _, events = shop
    frame = pl.from_arrow(events)
    returners = pl.concat([copy_of(events, str(frame["user_id"][0]), f"returner-{n}") for n in (1, 2)])
    returners = returners.with_columns(pl.lit("return").alias("event_type"))
    model, features = FeatureModel.fit(
        as_events_table(pl.concat([frame, returners])), NO_CATALOGUE, SegmentSettings().weights
    )
    embedder = LightGCNEmbedder(0, TINY).fit(features)
    embedding = embedder.transform(features)
    rows = [list(features.users).index(f"returner-{n}") for n in (1, 2)]
    np.testing.assert_array_equal(embedding.vectors[rows], 0.0)
    others = np.delete(embedding.vectors, rows, axis=0)
    np.testing.assert_allclose(np.linalg.norm(others, axis=1), 1.0, rtol=1e-5)
    newcomer = returners.filter(pl.col("user_id") == "returner-1").with_columns(user_id=pl.lit("new"))
    np.testing.assert_array_equal(embedder.transform(model.transform(newcomer)).vectors, 0.0)


def test_a_user_of_the_fit_with_new_items_is_folded_in_and_one_without_keeps_their_vector(shop, trained):
    """Helper 38: `segflow score` gave a fit's user their stored vector whatever their new events said (180
    sports plays later, still in the coffee segment), while a copy of them under a new id moved."""
    model, features, events = shop
    original = trained.transform(features)
    first, second = features.users[0], features.users[1]
    theirs = pl.from_arrow(events).filter(pl.col("user_id") == first)
    more = copy_of(events, second, first)  # the first user now also has every event of the second
    again = trained.transform(model.transform(pl.concat([theirs, more]).to_arrow()))
    folded = trained.transform(model.transform(pl.concat([theirs.with_columns(pl.lit("twin").alias("user_id")),
                                                          more.with_columns(pl.lit("twin").alias("user_id"))]).to_arrow()))  # fmt: skip
    np.testing.assert_allclose(again.vectors[0], folded.vectors[0], rtol=1e-5)  # as a newcomer would be
    assert float(again.vectors[0] @ original.vectors[0]) < 0.999
    unchanged = trained.transform(model.transform(theirs.to_arrow()))
    np.testing.assert_array_equal(unchanged.vectors[0], original.vectors[0])
