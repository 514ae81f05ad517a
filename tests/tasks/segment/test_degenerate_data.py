"""Degenerate data through the saved segmenter: an empty events frame, a catalogue of one item."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tasks.embed.svd import SvdEmbedder
from tasks.features.events import as_events_table
from tasks.features.user_features import FeatureModel
from tasks.segment.segmenter import Segmenter, fit_clusterer, fit_options, people_embedder
from tasks.segment.settings import SegmentSettings

T0 = datetime(2026, 1, 1)


def shop(one_item: bool = False) -> tuple[pa.Table, pa.Table]:
    rows = [
        (
            f"u{u}",
            "only" if one_item else f"i{(u * j) % 7}",
            ("view", "purchase")[j % 2],
            T0 + timedelta(hours=u + 3 * j),
        )
        for u in range(30)
        for j in range(1 + u % 5)
    ]
    events = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")
    return as_events_table(events), pa.table({"item_id": pa.array([], pa.string())})


@pytest.mark.parametrize("family", ["combined", "lightgcn", "sequence", "text", "autoencoder"])
def test_an_empty_events_frame_assigns_no_rows(family, tmp_path):
    events, items = shop()
    settings = SegmentSettings(embedding=family, max_epochs=1, accelerator="cpu")
    items = pa.table({"item_id": [f"i{k}" for k in range(7)], "title": [f"thing {k}" for k in range(7)]})
    model, features = FeatureModel.fit(events, items, settings.weights)
    embedder = people_embedder(family, 0, fit_options(settings)).fit(features)
    clusterer = fit_clusterer(embedder.transform(features), settings, 2)
    path = Segmenter(model, embedder, clusterer, settings).save(tmp_path / "s.pkl")
    assigned = Segmenter.load(path).assign(events.slice(0, 0))
    assert assigned.height == 0 and assigned.columns == ["user_id", "segment_id", "distance", "placed_by"]


def test_svd_of_a_catalogue_of_one_item_gives_every_user_the_same_unit_vector():
    events, items = shop(one_item=True)
    _, features = FeatureModel.fit(events, items, SegmentSettings().weights)
    vectors = SvdEmbedder(0).fit(features).transform(features).vectors
    assert vectors.shape == (30, 1)
    assert np.allclose(vectors, 1.0)  # one item: every user's taste is that item, a unit vector
