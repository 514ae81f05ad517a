"""The `fusion` embedder: chosen families side by side, each block L2-normalised per row and scaled by
sqrt(its weight); by default behaviour + svd, and text when the items have titles."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.embed.base import FitOptions
from tasks.embed.fusion import FusionEmbedder
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.ingest.demo import DemoConfig, write_demo_data
from tasks.segment.settings import SegmentSettings


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A 40-user demo shop of 24 titled items: its events, and its catalogue with and without titles."""
    out = tmp_path_factory.mktemp("shop")
    write_demo_data(out, DemoConfig(n_users=40, seed=5, items_per_category=2))
    events = as_events_table(pl.read_csv(out / "events.csv", try_parse_dates=True))
    catalogue = pl.read_csv(out / "items.csv")
    return (
        events,
        catalogue.select("item_id", "title", "category").to_arrow(),
        catalogue.select("item_id", "category").to_arrow(),
    )


def block_norms(vectors: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    edges = np.cumsum([0, *widths])
    return [np.linalg.norm(vectors[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_without_titles_the_default_is_behaviour_and_svd_each_of_unit_norm(shop):
    events, _, untitled = shop
    model, features = FeatureModel.fit(events, untitled, SegmentSettings().weights)
    fusion = FusionEmbedder(0).fit(features)
    assert fusion.chosen == ("behaviour", "svd")
    vectors = fusion.transform(features).vectors
    widths = [part.transform(features).vectors.shape[1] for part in fusion.parts]
    assert vectors.shape == (40, sum(widths)) and np.isfinite(vectors).all()
    for norms in block_norms(vectors, widths):
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    # A newcomer who copies a fitted user is embedded like them, without a refit.
    first = features.users[0]
    copy = (
        pl.from_arrow(events).filter(pl.col("user_id") == first).with_columns(pl.lit("new").alias("user_id"))
    )
    np.testing.assert_allclose(fusion.transform(model.transform(copy)).vectors[0], vectors[0], atol=1e-5)


def test_weights_scale_each_block_to_the_root_of_its_weight(shop):
    events, _, untitled = shop
    _, features = FeatureModel.fit(events, untitled, SegmentSettings().weights)
    fusion = FusionEmbedder(0, families=["svd", "behaviour"], weights=[4.0, 1.0]).fit(features)
    vectors = fusion.transform(features).vectors
    widths = [part.transform(features).vectors.shape[1] for part in fusion.parts]
    svd, behaviour = block_norms(vectors, widths)
    np.testing.assert_allclose(svd, 2.0, rtol=1e-5)
    np.testing.assert_allclose(behaviour, 1.0, rtol=1e-5)


def test_with_titles_text_joins_and_the_saved_fusion_gives_the_same_vectors(shop, tmp_path):
    events, titled, _ = shop
    _, features = FeatureModel.fit(events, titled, SegmentSettings().weights)
    fusion = FusionEmbedder(0).fit(features)
    assert fusion.chosen == ("behaviour", "svd", "text")
    vectors = fusion.transform(features).vectors
    assert vectors.shape[1] == sum(p.transform(features).vectors.shape[1] for p in fusion.parts)
    assert vectors.shape[1] > 384 and np.isfinite(vectors).all()
    reloaded = FusionEmbedder.load(fusion.save(tmp_path / "fusion.pkl"))
    np.testing.assert_array_equal(reloaded.transform(features).vectors, vectors)


@pytest.mark.parametrize(
    ("families", "weights"),
    [(["fusion"], None), ([], None), (["svd", "behaviour"], [1.0]), (["svd"], [0.0]), (None, [1.0])],
)
def test_impossible_choices_are_refused(families, weights):
    with pytest.raises(ValueError, match="fusion"):
        FusionEmbedder(0, families=families, weights=weights)


def test_no_users_give_no_rows_of_the_fused_width_not_an_error(shop):
    """An empty events frame through a fusion of learned families (what a segmenter of `lightgcn` or
    `sequence` assigns with): sklearn's normalize refused the empty blocks."""
    events, _, no_titles = shop
    model, features = FeatureModel.fit(events, no_titles, SegmentSettings().weights)
    fusion = FusionEmbedder(0, families=("lightgcn", "sequence"))
    fusion.configure(FitOptions(max_epochs=1, accelerator="cpu")).fit(features)
    embedding = fusion.transform(model.transform(events.slice(0, 0)))
    assert embedding.vectors.shape == (0, fusion.transform(features).vectors.shape[1])
    assert len(embedding.user_ids) == 0
