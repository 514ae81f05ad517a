"""The `autoencoder` embedder on a small demo shop: one epoch trains to finite vectors of the bottleneck's width,
the losses reach the logger, a new user is one forward pass, and save/load and seeds reproduce vectors."""

from __future__ import annotations

import csv

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from models.common import TrainSettings
from tasks.embed.autoencoder import AutoencoderEmbedder
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.ingest.demo import DemoConfig, write_demo_data
from tasks.segment.settings import SegmentSettings

ONE_EPOCH = TrainSettings(max_epochs=1, batch_size=32)
ITEMLESS = pa.table({"item_id": pa.array([], pa.string())})


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The fitted feature model and features of a 60-user demo shop, and its events."""
    out = tmp_path_factory.mktemp("shop")
    write_demo_data(out, DemoConfig(n_users=60, seed=3, items_per_category=4))
    events = as_events_table(pl.read_csv(out / "events.csv", try_parse_dates=True))
    items = pl.read_csv(out / "items.csv").select("item_id", "category").to_arrow()
    model, features = FeatureModel.fit(events, items, SegmentSettings().weights)
    return model, features, events


def small(seed: int = 0, **kwargs) -> AutoencoderEmbedder:
    return AutoencoderEmbedder(seed, dim=4, hidden=8, train=ONE_EPOCH, **kwargs)


def test_one_epoch_gives_finite_vectors_of_the_bottleneck_width_and_logs_both_losses(shop, tmp_path):
    _, features, _ = shop
    embedder = small(logger=CSVLogger(tmp_path, name="ae")).fit(features)
    embedding = embedder.transform(features)
    assert embedding.vectors.shape == (60, 4) and embedding.vectors.dtype == np.float32
    assert np.isfinite(embedding.vectors).all() and embedding.vectors.std(axis=0).min() > 0
    assert list(embedding.user_ids) == list(features.users) and embedder.n_epochs == 1
    (metrics,) = tmp_path.glob("ae/*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    logged = {name: float(row[name]) for row in rows for name in ("train/loss", "val/loss") if row.get(name)}
    assert set(logged) == {"train/loss", "val/loss"} and np.isfinite(list(logged.values())).all()


def test_a_new_user_is_embedded_by_the_fitted_network_without_training(shop):
    model, features, events = shop
    embedder = small().fit(features)
    weights = {k: v.clone() for k, v in embedder.network.state_dict().items()}
    frame = pl.from_arrow(events)
    first = features.users[0]
    copy = frame.filter(pl.col("user_id") == first).with_columns(pl.lit("newcomer").alias("user_id"))
    placed = embedder.transform(model.transform(copy))
    assert list(placed.user_ids) == ["newcomer"]
    # The same events as a fitted user: the same vector, by the same weights.
    np.testing.assert_allclose(
        placed.vectors[0], embedder.transform(features).vectors[0], rtol=1e-5, atol=1e-6
    )
    assert all(np.array_equal(weights[k], v) for k, v in embedder.network.state_dict().items())


def test_save_and_load_and_the_seed_reproduce_the_vectors(shop, tmp_path):
    _, features, _ = shop
    embedder = small(seed=1, logger=CSVLogger(tmp_path, name="ae")).fit(features)
    vectors = embedder.transform(features).vectors
    reloaded = AutoencoderEmbedder.load(embedder.save(tmp_path / "ae.pkl"))
    assert reloaded.logger is None  # a logger is a live connection: never pickled
    np.testing.assert_array_equal(reloaded.transform(features).vectors, vectors)
    np.testing.assert_array_equal(small(seed=1).fit(features).transform(features).vectors, vectors)
    assert not np.allclose(small(seed=2).fit(features).transform(features).vectors, vectors)


def test_a_catalogue_of_one_item_trains_on_behaviour_alone(shop):
    """Every user on the same one item: there is no taste to learn (TruncatedSVD refused the one column, and
    `--embedding autoencoder` stopped the run); how people shop still tells them apart."""
    _, _, events = shop
    one_item = pl.from_arrow(events).with_columns(pl.lit("the-only-item").alias("item_id"))
    model, features = FeatureModel.fit(as_events_table(one_item), ITEMLESS, SegmentSettings().weights)
    embedder = small().fit(features)
    assert embedder.svd is None
    vectors = embedder.transform(features).vectors
    assert vectors.shape == (60, 4) and np.isfinite(vectors).all()
    assert len(np.unique(vectors.round(5), axis=0)) > 1
    newcomer = one_item.filter(pl.col("user_id") == features.users[0]).with_columns(user_id=pl.lit("new"))
    np.testing.assert_allclose(
        embedder.transform(model.transform(newcomer)).vectors[0], vectors[0], atol=1e-5
    )


def test_no_users_give_no_rows_not_an_error(shop):
    model, features, events = shop
    embedding = small().fit(features).transform(model.transform(events.slice(0, 0)))
    assert embedding.vectors.shape == (0, 4) and len(embedding.user_ids) == 0


def test_an_epoch_of_few_users_is_sixteen_batches_of_whole_passes(shop):
    """ml-latest-small's 549 training users made 5 steps an epoch, and val/loss was still falling when all
    100 epochs were done; an epoch is now at least 16 batches, and at most ROWS_PER_EPOCH users."""
    _, features, _ = shop
    data, _ = AutoencoderEmbedder(0, train=TrainSettings(batch_size=32)).training_parts(features)
    assert len(data.train) == 54  # 60 users, 6 of them held out for val/loss
    loader = data.train_dataloader()  # Lightning iterates one loader once an epoch
    batches = [batch for group in loader for batch in group]
    assert [len(x) for (x,) in batches] == [32] * 16  # 9 passes over the 54 and 26 rows of a tenth
    again = [batch for group in loader for batch in group]
    assert not torch.equal(batches[0][0], again[0][0])  # each epoch draws a new order
