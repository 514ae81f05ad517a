"""Micro-segments, for recommenders: many fine-grained taste clusters, each with its own top list, and every
user's soft membership in the nearest few (as Pinterest's PinnerSage keeps several interest clusters per
user). A recommender blends the lists by the weights; `blend_lists` is that blend, and `recommend_users` the
ready per-user list published as `user_recommendations`.

Membership weights: over the user's `n_memberships` nearest micro-centroids, w_j ~ exp(-d_j^2 / t), summing
to 1, where the temperature t is the fit's mean squared distance of users to their nearest centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from tasks.cluster.base import Clusterer, nearest_centroid
from tasks.embed.base import Embedder, Embedding
from tasks.embed.svd import SvdEmbedder
from tasks.features.interactions import Interactions, interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

LIST_LENGTH = 100  # items in each micro-segment's published list; the blend reads only these


@dataclass(frozen=True)
class MicroSegments(Saveable):
    """The fitted micro level: a taste embedder, its clusterer, and how memberships are weighed."""

    taste: Embedder
    clusterer: Clusterer
    temperature: float
    n_memberships: int

    def embed(self, features: UserFeatures) -> Embedding:
        return self.taste.transform(features)

    def memberships(self, embedding: Embedding) -> sp.csr_matrix:
        """(n_users, n_micro): each user's weights over their nearest micro-segments (rows sum to 1)."""
        return membership_matrix(
            embedding.vectors, self.clusterer.centroids, self.n_memberships, self.temperature
        )

    def membership_frame(self, embedding: Embedding) -> pl.DataFrame:
        """`user_id, micro_segment_id, weight`, heaviest first per user."""
        weights = self.memberships(embedding).tocoo()
        frame = pl.DataFrame(
            {
                "user_id": embedding.user_ids[weights.row].astype(str),
                "micro_segment_id": weights.col.astype(np.int64),
                "weight": np.round(weights.data, 6),
            }
        )
        return frame.sort(["user_id", "weight", "micro_segment_id"], descending=[False, True, False])


def fit_taste(features: UserFeatures, seed: int) -> tuple[Embedder, Embedding]:
    """The taste embedding micro-segments live in: svd of the user-item matrix."""
    taste = SvdEmbedder(seed).fit(features)
    return taste, taste.transform(features)


def fit_micro(
    taste: Embedder, embedding: Embedding, clusterer: Clusterer, n_memberships: int
) -> MicroSegments:
    """Wrap a clusterer fitted on the taste embedding with its membership temperature."""
    distances = nearest_centroid(embedding.vectors, clusterer.centroids)[1]
    temperature = float(max(np.mean(distances**2), 1e-6))
    return MicroSegments(taste, clusterer, temperature, n_memberships)


def membership_matrix(
    vectors: np.ndarray, centroids: np.ndarray, m: int, temperature: float
) -> sp.csr_matrix:
    m = max(1, min(m, len(centroids)))
    squared = np.maximum(
        (vectors.astype(np.float64) ** 2).sum(axis=1)[:, None]
        - 2 * vectors.astype(np.float64) @ centroids.T.astype(np.float64)
        + (centroids.astype(np.float64) ** 2).sum(axis=1)[None, :],
        0,
    )
    nearest = np.argsort(squared, axis=1, kind="stable")[:, :m]
    near = np.take_along_axis(squared, nearest, axis=1)
    weights = np.exp(-(near - near[:, :1]) / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(vectors)), m)
    return sp.csr_matrix((weights.ravel(), (rows, nearest.ravel())), shape=(len(vectors), len(centroids)))


def ranked_segment_items(
    train: Interactions, labels: np.ndarray, n_segments: int, length: int = LIST_LENGTH
) -> pl.DataFrame:
    """`segment, i, score, rank`: each segment's top `length` items (`i` indexes `train.items`), scored by the
    share of its members who interacted with them, ties by overall share then item; `labels` per row of
    `train.users`, -1 for none."""
    valid = labels >= 0
    members = sp.csr_matrix(
        (np.ones(int(valid.sum())), (labels[valid], np.flatnonzero(valid))), shape=(n_segments, len(labels))
    )
    sizes = np.maximum(np.asarray(members.sum(axis=1)).ravel(), 1)
    shares = (sp.diags(1 / sizes) @ (members @ train.matrix)).tocoo()
    overall = np.asarray(train.matrix.mean(axis=0)).ravel()
    order = np.lexsort((shares.col, -overall[shares.col], -shares.data, shares.row))
    ranked = pl.DataFrame({"segment": shares.row[order].astype(np.int64), "i": shares.col[order].astype(np.int64),
                           "score": shares.data[order]})  # fmt: skip
    ranked = ranked.with_columns(pl.int_range(1, pl.len() + 1).over("segment").alias("rank"))
    return ranked.filter(pl.col("rank") <= length)


def segment_lists(
    train: Interactions, labels: np.ndarray, n_segments: int, length: int = LIST_LENGTH
) -> sp.csr_matrix:
    """(n_segments, n_items): `ranked_segment_items` as a sparse matrix of scores."""
    ranked = ranked_segment_items(train, labels, n_segments, length)
    return sp.csr_matrix(
        (ranked["score"].to_numpy(), (ranked["segment"].to_numpy(), ranked["i"].to_numpy())),
        shape=(n_segments, train.matrix.shape[1]),
    )


def blend_lists(memberships: sp.csr_matrix, lists: sp.csr_matrix) -> sp.csr_matrix:
    """(n_users, n_items): each user's blend of their micro-segments' lists, by membership weight."""
    return (memberships @ lists).tocsr()


def recommend_users(
    blended: sp.csr_matrix, seen: sp.csr_matrix, popularity: np.ndarray, k: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per user (rows of `blended`): the top `k` unseen items by blended score, topped up from the most
    popular unseen items when the blend has fewer; (item indices, scores)."""
    by_popularity = np.argsort(-popularity, kind="stable")
    result = []
    for u in range(blended.shape[0]):
        items, scores = (
            blended.indices[blended.indptr[u] : blended.indptr[u + 1]],
            blended.data[blended.indptr[u] : blended.indptr[u + 1]],
        )
        seen_items = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        keep = ~np.isin(items, seen_items) & (scores > 0)
        items, scores = items[keep], scores[keep]
        order = np.lexsort((items, -popularity[items], -scores))[:k]
        items, scores = items[order], scores[order]
        if len(items) < k:
            extra = by_popularity[~np.isin(by_popularity, np.concatenate([items, seen_items]))][
                : k - len(items)
            ]
            items, scores = np.concatenate([items, extra]), np.concatenate([scores, np.zeros(len(extra))])
        result.append((items, scores))
    return result


def micro_tables(
    features: UserFeatures,
    micro: MicroSegments,
    taste: Embedding,
    assignments: pl.DataFrame,
    n_recommendations: int,
    n_user_recommendations: int,
) -> dict[str, pl.DataFrame]:
    """The micro level as the published tables (without run_id): `micro_segments`,
    `micro_segment_recommendations`, `user_memberships` and `user_recommendations`. Rows of `features` and
    `taste` are the same users in the same order."""
    train = interaction_matrix(features.interactions, users=features.users)
    labels = micro.clusterer.predict(taste.vectors)[0]
    ranked = (
        ranked_segment_items(train, labels, micro.clusterer.k, length=n_recommendations)
        .rename({"segment": "micro_segment_id"})
        .with_columns(pl.col("score").round(6))
    )
    popularity = np.asarray(train.matrix.mean(axis=0)).ravel()
    recommended = recommend_users(
        blend_lists(micro.memberships(taste), segment_lists(train, labels, micro.clusterer.k)), train.matrix,
        popularity, n_user_recommendations,
    )  # fmt: skip
    user_rows = pl.DataFrame(
        {
            "user_id": np.repeat(train.users.astype(str), [len(items) for items, _ in recommended]),
            "i": np.concatenate([items for items, _ in recommended]).astype(np.int64),
            "score": np.round(np.concatenate([scores for _, scores in recommended]), 6),
        }
    ).with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank"))
    item_ids = pl.DataFrame({"i": np.arange(len(train.items)), "item_id": train.items.astype(str)})
    members = pl.DataFrame(
        {"user_id": taste.user_ids.astype(str), "micro_segment_id": labels.astype(np.int64)}
    )
    categories = (
        features.tables["fct_user_category"].join(members, on="user_id")
        .group_by("micro_segment_id", "category").agg(pl.col("share").sum())
        .sort(["micro_segment_id", "share", "category"], descending=[False, True, False])
        .group_by("micro_segment_id", maintain_order=True).agg(pl.col("category").head(3).alias("top_categories"))
    )  # fmt: skip
    segments = (
        members.join(assignments.select("user_id", "segment_id"), on="user_id", how="left")
        .group_by("micro_segment_id")
        .agg(pl.len().alias("size"), pl.col("segment_id").mode().min().alias("segment_id"))
        .join(categories, on="micro_segment_id", how="left")
        .sort("micro_segment_id")
    )
    return {
        "micro_segments": segments.select("micro_segment_id", "size", "segment_id", "top_categories"),
        "micro_segment_recommendations": ranked.join(item_ids, on="i").sort("micro_segment_id", "rank")
        .select("micro_segment_id", "rank", "item_id", "score"),
        "user_memberships": micro.membership_frame(taste),
        "user_recommendations": user_rows.join(item_ids, on="i").sort("user_id", "rank")
        .select("user_id", "rank", "item_id", "score"),
    }  # fmt: skip
