"""Micro-segments, for recommenders: many fine-grained taste clusters, each with its own top list, and every
user's soft membership in the nearest few (as Pinterest's PinnerSage keeps several interest clusters per
user). `MicroSegments.recommend` makes the ready per-user list published as `user_recommendations`, for the
users of a run and for users scored later by its saved segmenter alike.

Membership weights: over the user's `n_memberships` nearest micro-centroids, w_j ~ exp(-d_j^2 / t), summing
to 1, where the temperature t is the fit's mean squared distance of users to their nearest centroid.

A user's list: the candidates are the items of their micro-segments' lists (the top LIST_LENGTH of each, by
the share of its members who interacted with them), less the items they have seen. Each candidate scores
(1 - a) * blend + a * personal, where blend is the membership-weighted sum of the lists' shares over the
user's best candidate's (so in (0, 1]) and personal the user's own taste vector times the item's (the svd
reconstruction) scaled to [0, 1] over the user's candidates; a, `personal_weight`, is chosen on the inner validation split (0: the pure blend of the
micro-segments' lists). Lists shorter than asked are topped up from the most popular unseen items (score 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import scipy.sparse as sp

from tasks.cluster.base import Clusterer, nearest_centroid
from tasks.embed.base import Embedding
from tasks.embed.svd import SvdEmbedder
from tasks.evaluate.metrics import global_item_scores, member_shares
from tasks.features.interactions import Interactions, interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable
from tasks.segment.reach import blank_rows

LIST_LENGTH = 100  # items in each micro-segment's list that the blend reads
RECOMMEND_CHUNK = 20_000  # users whose lists are made at once
PERSONAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the grid `personal_weight` is chosen from


@dataclass(frozen=True)
class MicroLists:
    """What a user's list is made from, fitted with the micro-segments: the fit's items, each micro-segment's
    top LIST_LENGTH items by member share, every item's share of users (ties and top-up) and its taste vector."""

    items: np.ndarray
    shares: sp.csr_matrix  # (n_micro, n_items)
    popularity: np.ndarray  # (n_items,)
    item_vectors: np.ndarray  # (n_items, taste dimensions)


@dataclass(frozen=True)
class Candidates:
    """Users' candidates as CSR-ordered pairs (row, item) with their blend and personal scores in [0, 1]."""

    indptr: np.ndarray
    rows: np.ndarray
    items: np.ndarray
    blend: np.ndarray
    personal: np.ndarray
    seen: sp.csr_matrix


@dataclass(frozen=True)
class MicroSegments(Saveable):
    """The fitted micro level: a taste embedder, its clusterer, how memberships are weighed, and the lists."""

    taste: SvdEmbedder
    clusterer: Clusterer
    temperature: float
    n_memberships: int
    lists: MicroLists
    personal_weight: float = 0.0

    def embed(self, features: UserFeatures) -> Embedding:
        return self.taste.transform(features)

    def memberships(self, embedding: Embedding) -> sp.csr_matrix:
        """(n_users, n_micro): each user's weights over their nearest micro-segments (rows sum to 1)."""
        sizes = np.bincount(self.clusterer.labels_, minlength=self.clusterer.k)
        return membership_matrix(
            embedding.vectors, self.clusterer.centroids, self.n_memberships, self.temperature, sizes
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

    def with_personal_weight(self, personal_weight: float) -> MicroSegments:
        return replace(self, personal_weight=float(personal_weight))

    def candidates(self, embedding: Embedding, seen: sp.csr_matrix) -> Candidates:
        """Every user's candidates (rows of `embedding`; `seen`: the same rows over `lists.items`) with their
        blend and personal scores, before the personal weight mixes them (module doc)."""
        lists = self.lists
        blended = (self.memberships(embedding) @ lists.shares).tocsr()
        blended = (blended - blended.multiply(seen.astype(bool))).tocsr()  # seen items out
        blended.data[blended.data < 0] = 0
        blended.eliminate_zeros()
        rows = np.repeat(np.arange(blended.shape[0]), np.diff(blended.indptr))
        blend = blended.data / np.asarray(blended.max(axis=1).todense()).ravel()[rows]
        personal = _row_unit_scale(
            _pair_dots(embedding.vectors, lists.item_vectors, rows, blended.indices), blended.indptr
        )
        blank = blank_rows(embedding.vectors)[rows]  # no taste of their own: the blend is all there is
        personal[blank] = blend[blank]
        return Candidates(blended.indptr, rows, blended.indices, blend, personal, seen)

    def recommend(
        self, embedding: Embedding, seen: sp.csr_matrix, k: int, candidates: Candidates | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per user (rows of `embedding`; `seen`: the same rows over `lists.items`): the top `k` unseen items
        (indices of `lists.items`) and their scores, as the module doc says. Vectorised over all users'
        candidates at once (`candidates`, when made already); only lists short of `k` are topped up one user
        at a time. Without `candidates`, users go RECOMMEND_CHUNK at a time: a user's candidates are up to
        n_memberships x LIST_LENGTH items, and all users' at once were 139M pairs (12 GB) at 463,000 users."""
        if len(embedding.vectors) == 0:
            return []
        if candidates is None and len(embedding.vectors) > RECOMMEND_CHUNK:
            result = []
            for start in range(0, len(embedding.vectors), RECOMMEND_CHUNK):
                rows = slice(start, start + RECOMMEND_CHUNK)
                part = Embedding(embedding.name, embedding.user_ids[rows], embedding.vectors[rows])
                result += self.recommend(part, seen[rows], k)
            return result
        c = candidates or self.candidates(embedding, seen)
        popularity, n_users = self.lists.popularity, len(c.indptr) - 1
        scores = (1 - self.personal_weight) * c.blend + self.personal_weight * c.personal
        by_popularity = np.argsort(-popularity, kind="stable")  # ties: the lower index first
        popularity_rank = np.empty(len(popularity), dtype=np.int64)
        popularity_rank[by_popularity] = np.arange(len(popularity))
        # Each row's candidates by score, then popularity, then index (a row holds an item once). Polars sorts
        # the 6M pairs of a block in under a second; np.lexsort on the same keys took 8 s.
        order = (
            pl.DataFrame({"row": c.rows, "score": scores, "rank": popularity_rank[c.items]})
            .with_row_index("at")
            .sort(["row", "score", "rank"], descending=[False, True, False], maintain_order=True)["at"]
            .to_numpy()
        )
        top = np.arange(len(order)) - c.indptr[c.rows[order]] < k
        rows, items, scores = c.rows[order][top], c.items[order][top], scores[order][top]
        bounds = np.cumsum(np.bincount(rows, minlength=n_users))[:-1]
        result = list(zip(np.split(items, bounds), np.split(scores, bounds), strict=True))
        for u in np.flatnonzero(np.diff(c.indptr) < k):
            listed, listed_scores = result[u]
            seen_items = c.seen.indices[c.seen.indptr[u] : c.seen.indptr[u + 1]]
            extra = by_popularity[~np.isin(by_popularity, np.concatenate([listed, seen_items]))][
                : k - len(listed)
            ]
            result[u] = (
                np.concatenate([listed, extra]),
                np.concatenate([listed_scores, np.zeros(len(extra))]),
            )
        return result

    def user_lists(self, features: UserFeatures, k: int) -> pl.DataFrame:
        """`user_id, rank, item_id, score`: the ready list of `k` items of every user in `features`."""
        seen = interaction_matrix(features.interactions, users=features.users, items=self.lists.items).matrix
        return self.recommendation_frame(self.embed(features), seen, k)

    def recommendation_frame(self, embedding: Embedding, seen: sp.csr_matrix, k: int) -> pl.DataFrame:
        """`recommend` as rows `user_id, rank, item_id, score`."""
        recommended = self.recommend(embedding, seen, k)
        return (
            pl.DataFrame(
                {
                    "user_id": np.repeat(
                        embedding.user_ids.astype(str), [len(items) for items, _ in recommended]
                    ),
                    "item_id": self.lists.items[
                        np.concatenate([items for items, _ in recommended] or [[]]).astype(np.int64)
                    ].astype(str),
                    "score": np.round(np.concatenate([scores for _, scores in recommended] or [[]]), 6),
                },
                schema={"user_id": pl.String, "item_id": pl.String, "score": pl.Float64},
            )
            .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank"))
            .select("user_id", "rank", "item_id", "score")
        )


def _pair_dots(
    users: np.ndarray, items: np.ndarray, rows: np.ndarray, columns: np.ndarray, chunk: int = 200_000
) -> np.ndarray:
    """users[rows[j]] . items[columns[j]] for every pair j, in chunks (never a pairs x dimensions array)."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        out[part] = np.einsum("ij,ij->i", users[rows[part]].astype(np.float64), items[columns[part]])
    return out


def _row_unit_scale(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """`values` (a CSR matrix's data, rows by `indptr`) scaled to [0, 1] within each row (1 where a row's
    values are all equal)."""
    starts = indptr[:-1][np.diff(indptr) > 0]
    counts = np.diff(indptr)[np.diff(indptr) > 0]
    low = np.repeat(np.minimum.reduceat(values, starts), counts)
    span = np.repeat(np.maximum.reduceat(values, starts), counts) - low
    return np.where(span > 1e-12, (values - low) / np.where(span > 1e-12, span, 1), 1.0)


def fit_taste(features: UserFeatures, seed: int) -> tuple[SvdEmbedder, Embedding]:
    """The taste embedding micro-segments live in: svd of the user-item matrix."""
    taste = SvdEmbedder(seed).fit(features)
    return taste, taste.transform(features)


def fit_micro(
    taste: SvdEmbedder, embedding: Embedding, clusterer: Clusterer, n_memberships: int, train: Interactions,
    personal_weight: float = 0.0,
) -> MicroSegments:  # fmt: skip
    """Wrap a clusterer fitted on the taste embedding with its membership temperature and its lists (from
    `train`, whose rows are the users of `embedding` in the same order)."""
    distances = nearest_centroid(embedding.vectors, clusterer.centroids)[1]
    temperature = float(max(np.mean(distances**2), 1e-6))
    labels = clusterer.predict(embedding.vectors)[0]
    lists = MicroLists(
        items=train.items,
        shares=segment_lists(train, labels, clusterer.k),
        popularity=global_item_scores(train),
        item_vectors=taste.item_vectors(train.items),
    )
    return MicroSegments(taste, clusterer, temperature, n_memberships, lists, float(personal_weight))


def membership_matrix(
    vectors: np.ndarray, centroids: np.ndarray, m: int, temperature: float, sizes: np.ndarray | None = None
) -> sp.csr_matrix:
    """Each user's weights over their `m` nearest centroids. With the micro-segments' `sizes`, a user without
    a taste vector (`blank_rows`), who is no nearer to one than another, belongs to the `m` largest, weighed
    by size: their list is made of everyone's favourites rather than the lists of whichever centroids lie nearest
    the origin."""
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
    blank = blank_rows(vectors)
    if sizes is not None and blank.any():
        largest = np.argsort(-sizes, kind="stable")[:m]
        nearest[blank] = largest
        weights[blank] = sizes[largest] / max(sizes[largest].sum(), 1)
    rows = np.repeat(np.arange(len(vectors)), m)
    return sp.csr_matrix((weights.ravel(), (rows, nearest.ravel())), shape=(len(vectors), len(centroids)))


def ranked_segment_items(
    train: Interactions, labels: np.ndarray, n_segments: int, length: int = LIST_LENGTH
) -> pl.DataFrame:
    """`segment, i, score, rank`: each segment's top `length` items (`i` indexes `train.items`), scored by the
    share of its members who interacted with them (`member_shares`), ties by overall share then item; `labels`
    per row of `train.users`, -1 for none."""
    shares = member_shares(train, labels, n_segments).tocoo()
    overall = global_item_scores(train)
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
    train = interaction_matrix(features.interactions, users=features.users, items=micro.lists.items)
    labels = micro.clusterer.predict(taste.vectors)[0]
    ranked = (
        ranked_segment_items(train, labels, micro.clusterer.k, length=n_recommendations)
        .rename({"segment": "micro_segment_id"})
        .with_columns(pl.col("score").round(6))
    )
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
        "user_recommendations": micro.recommendation_frame(taste, train.matrix, n_user_recommendations)
        .sort("user_id", "rank"),
    }  # fmt: skip
