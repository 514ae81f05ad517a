"""The `text` embedder on a handful of titled items: users are the weighted, recency-decayed mean of their items'
MiniLM vectors; item vectors are cached by text hash so a second fit encodes only new or changed items; new
users and new items need no refit; the saved embedder carries no encoder and gives the same vectors."""

from __future__ import annotations

import csv
import pickle
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from models.common import TrainSettings
from tasks.embed.item_text import (
    ParquetVectorStore,
    SentenceEncoder,
    encode_in_process,
    encoder_device,
    item_text,
)
from tasks.embed.text import TextEmbedder
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.segment.settings import SegmentSettings

WEIGHTS = SegmentSettings().weights
ITEMS = pa.table(
    {
        "item_id": ["a", "b", "c", "d", "e"],
        "title": ["Espresso beans", "Green tea", "Trail running shoes", "Camping tent", None],
        "category": ["coffee & tea", "coffee & tea", "sports|outdoors", "outdoors", None],
        "text": [None, "Green tea. A green tea from our range.", None, None, None],
    }
)


def events(rows: list[tuple[str, str, str, int]], **columns) -> pa.Table:
    """(user, item, event type, day of January 2024) rows as events."""
    frame = pl.DataFrame(
        [(u, i, e, datetime(2024, 1, d)) for u, i, e, d in rows],
        schema=["user_id", "item_id", "event_type", "ts"],
        orient="row",
    )
    return as_events_table(frame.with_columns(**{k: pl.lit(v) for k, v in columns.items()}))


SHOP = events(
    [
        ("u1", "a", "view", 1),
        ("u1", "b", "purchase", 31),
        ("u2", "c", "view", 5),
        ("u3", "c", "view", 3),
        ("u3", "d", "view", 4),
        ("u4", "e", "view", 6),  # an item without any words
    ]
)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    """One real MiniLM for the module (loading it costs seconds); counts what it encodes."""
    return SentenceEncoder()


@pytest.fixture(scope="module")
def shop():
    return FeatureModel.fit(SHOP, ITEMS, WEIGHTS)


def fitted(features, encoder: SentenceEncoder, **kwargs) -> TextEmbedder:
    embedder = TextEmbedder(0, **kwargs)
    embedder.encoder = encoder
    return embedder.fit(features)


def test_item_text_is_title_category_and_only_new_words_of_the_text():
    assert item_text("Toy Story (1995)", "Animation|Comedy", "Toy Story (1995) Animation Comedy") == (
        "Toy Story (1995). Animation, Comedy"
    )
    assert item_text("Green tea", None, "Green tea. A green tea from our range.") == (
        "Green tea. Green tea. A green tea from our range."
    )
    assert item_text(None, None, "  ") is None


def test_a_user_is_the_weighted_recency_decayed_mean_of_their_items_centred_on_the_catalogue(shop, encoder):
    _, features = shop
    embedder = fitted(features, encoder, half_life_days=30.0)
    embedding = embedder.transform(features)
    assert embedding.vectors.shape == (4, 384) and np.isfinite(embedding.vectors).all()
    a, b, c, d = encoder.encode(
        [item_text(r["title"], r["category"], r["text"]) for r in ITEMS.slice(0, 4).to_pylist()]
    )
    centre = embedder.centre
    np.testing.assert_allclose(centre, np.mean(list(embedder.vectors.values()), axis=0), atol=1e-6)
    # u1: a view (weight 1) 30 days before the last event (one half-life), a purchase (weight 5) on that day.
    expected = (0.5 * a + 5 * b) / 5.5 - centre
    np.testing.assert_allclose(embedding.vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_allclose(embedding.vectors[1], (c - centre) / np.linalg.norm(c - centre), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding.vectors[:3], axis=1), 1.0, rtol=1e-5)
    # u4's only item has no words: no taste to tell them by, a zero vector (not NaN).
    np.testing.assert_array_equal(embedding.vectors[3], np.zeros(384, dtype=np.float32))


def test_a_second_fit_encodes_only_new_or_changed_items_and_a_store_keeps_them_across_fits(
    shop, encoder, tmp_path
):
    _, features = shop
    store = ParquetVectorStore(tmp_path / "item_text_vectors.parquet")
    embedder = fitted(features, encoder, store=store)
    assert embedder.n_encoded == 4 and len(store.load_cache()) == 4
    changed = ITEMS.set_column(
        1, "title", pa.array(["Espresso beans", "Jasmine tea", *ITEMS["title"][2:].to_pylist()])
    )
    more = pa.concat_tables([SHOP, events([("u5", "f", "view", 7)], item_title="Headlamp")])
    _, later = FeatureModel.fit(more, changed, WEIGHTS)
    assert embedder.fit(later).n_encoded == 2  # "Jasmine tea" and the new headlamp
    fresh = TextEmbedder(0, store=store)
    fresh.encoder = encoder
    assert fresh.fit(later).n_encoded == 0  # all six are in the store
    np.testing.assert_array_equal(fresh.transform(later).vectors, embedder.transform(later).vectors)


def test_texts_encoded_ahead_in_a_process_are_what_a_fit_finds_in_the_store(shop, encoder, tmp_path):
    """What a run encodes beside its other stages (flows/segment_users.py `encode_item_texts`): the items'
    texts the store lacks, once, in a process of its own on one thread, leaving this process's threads as they
    were; a fit then encodes nothing and embeds users as one that encodes itself."""
    _, features = shop
    cache = tmp_path / "item_text_vectors.parquet"
    threads = torch.get_num_threads()
    assert encode_in_process(features.items, cache, 1, "auto") == 4  # item e has no words; a GPU if any
    assert encode_in_process(features.items, cache, 1) == 0
    assert torch.get_num_threads() == threads
    ahead = fitted(features, encoder, store=ParquetVectorStore(cache))
    assert ahead.n_encoded == 0
    itself = fitted(features, encoder)  # no store: encodes the four on torch's threads as set
    assert itself.n_encoded == 4
    np.testing.assert_allclose(
        ahead.transform(features).vectors, itself.transform(features).vectors, atol=1e-6
    )


def test_encoding_in_a_process_that_fails_says_why(shop, tmp_path):
    _, features = shop
    (tmp_path / "cache").write_text("a file where the cache's folder should be")
    with pytest.raises(RuntimeError, match=r"^encoding the item texts failed: FileExistsError: .*cache"):
        encode_in_process(features.items, tmp_path / "cache" / "item_text_vectors.parquet", 1)


def test_a_new_user_with_a_new_item_is_placed_without_a_refit(shop, encoder):
    model, features = shop
    embedder = fitted(features, encoder)
    cached = dict(embedder.vectors)
    newcomer = events([("new", "z", "view", 20)], item_title="Camping stove", item_category="outdoors")
    embedding = embedder.transform(model.transform(newcomer))
    (stove,) = encoder.encode(["Camping stove. outdoors"])
    assert list(embedding.user_ids) == ["new"]
    expected = stove - embedder.centre  # centred on the fitted catalogue
    np.testing.assert_allclose(embedding.vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert embedder.vectors.keys() == cached.keys()  # transform changes nothing it learned


def test_the_saved_embedder_has_no_encoder_and_gives_the_same_vectors(shop, encoder, tmp_path):
    _, features = shop
    embedder = fitted(features, encoder, store=ParquetVectorStore(tmp_path / "v.parquet"))
    vectors = embedder.transform(features).vectors
    assert b"BertModel" not in pickle.dumps(embedder) and len(pickle.dumps(embedder)) < 50_000
    reloaded = TextEmbedder.load(embedder.save(tmp_path / "text.pkl"))
    assert reloaded.store is None
    np.testing.assert_array_equal(reloaded.transform(features).vectors, vectors)
    assert reloaded.encoder.model is None  # known items only: the encoder was not even loaded
    np.testing.assert_array_equal(fitted(features, encoder).transform(features).vectors, vectors)


def test_items_without_words_are_refused_by_name():
    no_words = pa.table(
        {"item_id": ["a"], "title": pa.nulls(1, pa.string()), "category": pa.nulls(1, pa.string())}
    )
    _, features = FeatureModel.fit(
        events([("u1", "a", "view", 1), ("u2", "a", "view", 2)]), no_words, WEIGHTS
    )
    with pytest.raises(ValueError, match="needs items with a title, a category or a text"):
        TextEmbedder(0).fit(features)


def test_the_projection_head_trains_on_next_items_and_reproduces_after_save_and_by_seed(
    shop, encoder, tmp_path
):
    _, features = shop
    one_epoch = TrainSettings(max_epochs=1, batch_size=8)
    logger = CSVLogger(tmp_path, name="head")
    embedder = fitted(features, encoder, head=True, head_train=one_epoch, logger=logger)
    vectors = embedder.transform(features).vectors
    assert vectors.shape == (4, 384) and np.isfinite(vectors).all()
    # u4's only item has no words: zero, as without a head.
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1.0, 1.0, 1.0, 0.0], rtol=1e-5)
    assert not np.allclose(vectors, fitted(features, encoder).transform(features).vectors)  # the head moved
    (metrics,) = tmp_path.glob("head/*/metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    assert {name for row in rows for name in ("train/loss", "val/loss") if row.get(name)} == {
        "train/loss",
        "val/loss",
    }
    reloaded = TextEmbedder.load(embedder.save(tmp_path / "text.pkl"))
    np.testing.assert_array_equal(reloaded.transform(features).vectors, vectors)
    again = fitted(features, encoder, head=True, head_train=one_epoch).transform(features).vectors
    np.testing.assert_array_equal(again, vectors)


def test_no_users_give_no_rows_not_an_error(shop, encoder):
    model, features = shop
    embedding = fitted(features, encoder).transform(model.transform(SHOP.slice(0, 0)))
    assert embedding.vectors.shape == (0, 384) and len(embedding.user_ids) == 0


def test_the_encoder_takes_a_gpu_where_the_families_would_and_the_cpu_otherwise():
    assert [encoder_device(a, has_cuda=True) for a in ("auto", "gpu", "cpu")] == ["cuda", "cuda", "cpu"]
    assert [encoder_device(a, has_cuda=False) for a in ("auto", "gpu", "cpu")] == ["cpu", "cpu", "cpu"]
