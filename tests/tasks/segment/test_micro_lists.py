"""A user's ready list: the micro-segments' lists blended by membership weight, less seen items, reordered by
the user's own taste as much as the personal weight says, topped up by popularity (tasks/segment/micro.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tasks.cluster.registry import make_clusterer
from tasks.embed.base import Embedding
from tasks.embed.svd import SvdEmbedder
from tasks.segment.micro import MicroLists, MicroSegments

ITEMS = np.array(["i0", "i1", "i2", "i3", "i4"], dtype=object)


@pytest.fixture(scope="module")
def micro() -> MicroSegments:
    # Two micro-segments with centroids (1, 0) and (0, 1); the user below, at (0.8, 0.6), is 0.4 (squared)
    # from the first and 0.8 from the second: with temperature 0.4 / ln 3 their weights are 3/4 and 1/4.
    points = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5, dtype=np.float32)
    clusterer = make_clusterer("kmeans", 0).fit(points, 2)
    first = int(clusterer.predict(points[:1])[0][0])
    shares = np.zeros((2, 5))
    shares[first, [0, 1, 2]] = [0.8, 0.4, 0.2]
    shares[1 - first, [1, 3]] = [1.0, 0.5]
    lists = MicroLists(
        items=ITEMS,
        shares=sp.csr_matrix(shares),
        popularity=np.array([0.5, 0.4, 0.3, 0.2, 0.1]),
        item_vectors=np.array([[0, 1], [1, 0], [0, 0], [1, 1], [0, 0]], dtype=np.float64),
    )
    return MicroSegments(SvdEmbedder(0), clusterer, 0.4 / math.log(3), 2, lists)


def user_list(micro: MicroSegments, personal_weight: float) -> list[tuple[str, float]]:
    user = Embedding("svd", np.array(["u"], dtype=object), np.array([[0.8, 0.6]], dtype=np.float32))
    seen = sp.csr_matrix(np.array([[0, 0, 1, 0, 0]]))  # i2 seen
    items, scores = micro.with_personal_weight(personal_weight).recommend(user, seen, 4)[0]
    return [(str(ITEMS[i]), round(float(s), 6)) for i, s in zip(items, scores, strict=True)]


def test_with_no_personal_weight_the_list_is_the_blend_of_the_micro_lists(micro):
    # Blend: i0 3/4 * 0.8 = 0.6, i1 3/4 * 0.4 + 1/4 * 1.0 = 0.55, i3 1/4 * 0.5 = 0.125 (i2 seen), over the
    # best, 0.6; then the most popular item not listed nor seen, i4, with score 0.
    assert user_list(micro, 0.0) == [("i0", 1.0), ("i1", 0.916667), ("i3", 0.208333), ("i4", 0.0)]


def test_with_full_personal_weight_the_users_taste_orders_the_candidates(micro):
    # Taste: i0 0.6, i1 0.8, i3 1.4, scaled to [0, 1] over the candidates; i4 is no candidate, still last.
    assert user_list(micro, 1.0) == [("i3", 1.0), ("i1", 0.25), ("i0", 0.0), ("i4", 0.0)]


def test_a_personal_weight_between_mixes_both_scores(micro):
    # i3: (0.208333 + 1) / 2, i1: (0.916667 + 0.25) / 2, i0: (1 + 0) / 2
    assert user_list(micro, 0.5) == [("i3", 0.604167), ("i1", 0.583333), ("i0", 0.5), ("i4", 0.0)]


def test_no_users_get_no_lists(micro):
    nobody = Embedding("svd", np.array([], dtype=object), np.zeros((0, 2), dtype=np.float32))
    assert micro.recommend(nobody, sp.csr_matrix((0, 5)), 4) == []
