"""The Segmenter: everything a fit learned (feature statistics, embedder, clusterer, segment labels), saved
as one file; `assign(events)` gives any users, old or new, a segment and their distance to it.

A fit is three steps, each a task of the flow: `fit_features`, `fit_embedder`, `fit_clusterer`.
`fit_segmenter` runs them in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.cluster.base import Clusterer, default_min_segment_size, enforce_min_size
from tasks.cluster.registry import make_clusterer
from tasks.embed.base import Embedder, Embedding, FitOptions
from tasks.embed.registry import make_embedder
from tasks.features.interactions import interaction_matrix
from tasks.features.user_features import FeatureModel, UserFeatures
from tasks.fitted import Saveable
from tasks.segment.micro import MicroSegments, fit_micro, fit_taste
from tasks.segment.reach import Reach, unplaced
from tasks.segment.settings import SegmentSettings


class SegmentationError(ValueError):
    """The data cannot be segmented as asked (e.g. fewer users than segments)."""


@dataclass(frozen=True)
class Segmenter(Saveable):
    features: FeatureModel
    embedder: Embedder
    clusterer: Clusterer
    settings: SegmentSettings
    micro: MicroSegments | None = None
    segment_labels: dict[int, str] = field(default_factory=dict)
    reach: Reach | None = None  # None: saved before segments had a reach, or without micro-segments

    @property
    def k(self) -> int:
        return self.clusterer.k

    def assign(self, events, as_of: datetime | None = None) -> pl.DataFrame:
        """`user_id, segment_id, distance, placed_by` for every user in `events`; -1 is no segment (hdbscan
        noise); users beyond the segments' reach are placed by taste (tasks/segment/reach.py). `as_of`: the
        time the users are measured at (FeatureModel.transform; default the fit's end)."""
        return self._assign(self.features.transform(events, as_of))

    def memberships(self, events) -> pl.DataFrame:
        """`user_id, micro_segment_id, weight` for every user in `events`: their nearest micro-segments."""
        self._check_micro()
        return self.micro.membership_frame(self.micro.embed(self.features.transform(events)))

    def recommend(self, events, n: int | None = None) -> pl.DataFrame:
        """`user_id, rank, item_id, score`: the ready list of `n` items (default: the run's) of every user in
        `events`, as the run published them for its own users."""
        self._check_micro()
        return self.micro.user_lists(
            self.features.transform(events), n or self.settings.n_user_recommendations
        )

    def score(
        self, events, n: int | None = None, as_of: datetime | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
        """`assign`, `memberships` and `recommend` at once, from one pass over the users' features (None for
        the last two without micro-segments): what scoring and `segflow user` publish for a user, measured
        as of `as_of` (there: where the warehouse's events end, `latest_event_time`)."""
        features = self.features.transform(events, as_of)
        if self.micro is None:
            return self._assign(features), None, None
        self._check_micro()
        taste = self.micro.embed(features)
        memberships = self.micro.membership_frame(taste)
        lists = self.micro.user_lists(features, n or self.settings.n_user_recommendations)
        return self._assign(features, taste), memberships, lists

    def _assign(self, features: UserFeatures, taste: Embedding | None = None) -> pl.DataFrame:
        if len(features.users) == 0:  # no events: no rows (the fitted scalers refuse an empty matrix)
            return pl.DataFrame(schema=ASSIGNMENT_SCHEMA)
        if self.reach is not None and taste is None:
            taste = self.micro.embed(features)
        return assignment_frame(
            self.embedder.transform(features), self.clusterer, taste, self.reach, n_events(features)
        )

    def _check_micro(self) -> None:
        if self.micro is None:
            raise ValueError("this segmenter has no micro-segments")
        if getattr(self.micro, "lists", None) is None:  # saved before the lists were part of the fit
            raise SegmentationError(
                "this segmenter was saved by an older segflow, without its micro-segments' lists: run "
                "`segflow run` to publish one that makes ready lists"
            )

    def with_labels(self, labels: dict[int, str]) -> Segmenter:
        return replace(self, segment_labels=dict(labels))


ASSIGNMENT_SCHEMA = {
    "user_id": pl.String,
    "segment_id": pl.Int64,
    "distance": pl.Float64,
    "placed_by": pl.String,
}


def assignment_frame(
    embedding: Embedding, clusterer: Clusterer, taste: Embedding | None = None, reach: Reach | None = None,
    events: np.ndarray | None = None,
) -> pl.DataFrame:  # fmt: skip
    """`user_id, segment_id, distance, placed_by`: the nearest segment centre, or, with a `reach` and the same
    users' `taste` and number of `events`, by taste for the light users beyond it (tasks/segment/reach.py)."""
    labels, distances = clusterer.predict(embedding.vectors)
    if reach is None or taste is None or events is None:
        placed_by = unplaced(labels)
    else:
        if not np.array_equal(taste.user_ids, embedding.user_ids):
            raise ValueError("the taste embedding's users are not the embedding's, in the same order")
        labels, distances, placed_by = reach.place(
            embedding.vectors, clusterer.centroids, labels, distances, events, taste.vectors
        )
    return pl.DataFrame(
        {
            "user_id": embedding.user_ids.astype(str),
            "segment_id": labels.astype(np.int64),
            "distance": distances.astype(np.float64),
            "placed_by": placed_by.astype(str),
        },
        schema=ASSIGNMENT_SCHEMA,
    )


def n_events(features: UserFeatures) -> np.ndarray:
    """Each user's number of events, in the order of `features.users` (as counted: the wide frame's is clipped
    into the fit's range)."""
    counts = features.tables["fct_user_activity"].select("user_id", "n_events")
    users = pl.DataFrame({"user_id": features.users.astype(str)})
    return (
        users.join(counts, on="user_id", how="left", maintain_order="left")["n_events"]
        .fill_null(0)
        .to_numpy()
    )


def fit_reach(embedding: Embedding, clusterer: Clusterer, taste: Embedding, events: np.ndarray) -> Reach:
    """The segments' reach, from the fit's users (`embedding`, `taste`, their number of `events`: the same
    users, in order)."""
    labels, distances = clusterer.predict(embedding.vectors)
    return Reach.fit(labels, distances, events, taste.vectors, clusterer.k)


def check_segmentable(events: pa.Table, settings: SegmentSettings) -> int:
    """The number of users; a SegmentationError when there are too few for the settings."""
    n_users = len(pa.compute.unique(events.column("user_id")))
    needed = 2 * settings.k_min if settings.k == "auto" else int(settings.k)
    if n_users < needed:
        raise SegmentationError(f"{n_users} users with events: segmenting needs at least {needed}")
    return n_users


def fit_features(
    events: pa.Table, items: pa.Table, settings: SegmentSettings
) -> tuple[FeatureModel, UserFeatures]:
    return FeatureModel.fit(
        events, items, settings.weights, settings.engine, settings.spark_master, settings.timezone or "UTC"
    )


def fit_options(settings: SegmentSettings, **extra) -> FitOptions:
    """How the settings train learned families; `extra`: a logger, a text cache."""
    return FitOptions(
        max_epochs=settings.max_epochs, time_budget_s=settings.time_budget_s,
        accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes, **extra,
    )  # fmt: skip


# Families that see only what people interact with: for segments of people they are joined with how people
# shop (the behaviour block, equal weight), or segments that differ only in how people shop would merge.
# Item words join what the item ids say (svd) rather than replace it: words tell what kind of thing an item
# is, ids which one; a long tail's ids are shared by few people, its words by many.
PEOPLE_BLOCKS = {
    "svd": ("behaviour", "svd"),
    "lightgcn": ("behaviour", "lightgcn"),
    "sequence": ("behaviour", "sequence"),
    "text": ("behaviour", "svd", "text"),
}


def people_embedder(family: str, seed: int, options: FitOptions | None = None) -> Embedder:
    """The embedder of people-level segments for `family`: the family itself, or a fusion with the blocks of
    PEOPLE_BLOCKS for those that see only items (the embedding keeps the family's name)."""
    if family in PEOPLE_BLOCKS:
        from tasks.embed.fusion import FusionEmbedder

        return FusionEmbedder(seed, families=PEOPLE_BLOCKS[family], name=family).configure(options)
    return make_embedder(family, seed, options)


def fit_embedder(
    features: UserFeatures, settings: SegmentSettings, family: str | None = None,
    options: FitOptions | None = None,
) -> tuple[Embedder, Embedding]:  # fmt: skip
    """Fit one family (default: settings.reference_embedding, the one named or combined under auto) and embed
    the fit's users."""
    family = family or settings.reference_embedding
    embedder = people_embedder(family, settings.seed, options or fit_options(settings)).fit(features)
    return embedder, embedder.transform(features)


def fit_clusterer(embedding: Embedding, settings: SegmentSettings, k: int) -> Clusterer:
    """The people-level segments: fitted, then segments under the minimum size merged into their nearest."""
    clusterer = make_clusterer(settings.clusterer, settings.seed, fit_options(settings)).fit(
        embedding.vectors, k
    )
    return enforce_min_size(clusterer, embedding.vectors, min_segment_size(settings, len(embedding.vectors)))


def min_segment_size(settings: SegmentSettings, n_users: int) -> int:
    """The fewest users a published segment has: --min-segment-size, else the default for `n_users`."""
    return min(settings.min_segment_size or default_min_segment_size(n_users), max(1, n_users // 2))


def merged_note(k: int, clusterer: Clusterer, n_users: int, settings: SegmentSettings) -> list[str]:
    """For the summary, when segments under the minimum size were merged: the K chosen is not the number
    of segments printed below it."""
    n_merged = k - clusterer.k
    if n_merged <= 0:
        return []
    merged = "was merged into its" if n_merged == 1 else "were merged into their"
    return [
        f"{n_merged} of the K = {k} segments had fewer than {min_segment_size(settings, n_users):,} users "
        f"(--min-segment-size) and {merged} nearest: {clusterer.k} published"
    ]


def fit_micro_segments(
    features: UserFeatures, settings: SegmentSettings, k: int
) -> tuple[MicroSegments, Embedding]:
    """The micro level: taste embedding, K-Means with `k` micro-segments, membership weights, and the lists
    the per-user lists are made from (personal weight: the settings', 0 while still auto)."""
    taste, embedding = fit_taste(features, settings.seed)
    k = max(1, min(k, len(np.unique(embedding.vectors, axis=0))))
    clusterer = make_clusterer("kmeans", settings.seed).fit(embedding.vectors, k)
    train = interaction_matrix(features.interactions, users=features.users)
    weight = 0.0 if settings.personal_weight == "auto" else float(settings.personal_weight)
    return fit_micro(taste, embedding, clusterer, settings.n_memberships, train, weight), embedding


def fit_segmenter(
    events: pa.Table, items: pa.Table, settings: SegmentSettings, k: int, micro_k: int = 0
) -> Segmenter:
    """Features, embedder, clusterer (and `micro_k` micro-segments with the segments' reach, when given)
    fitted on `events`."""
    model, features = fit_features(events, items, settings)
    embedder, embedding = fit_embedder(features, settings)
    clusterer = fit_clusterer(embedding, settings, k)
    if not micro_k:
        return Segmenter(model, embedder, clusterer, settings)
    micro, taste = fit_micro_segments(features, settings, micro_k)
    return Segmenter(
        model,
        embedder,
        clusterer,
        settings,
        micro,
        reach=fit_reach(embedding, clusterer, taste, n_events(features)),
    )


def segmenter_path(workspace_root: Path | str, run_id: str) -> Path:
    """Where a run keeps its segmenter in the workspace."""
    return Path(workspace_root) / "segmenters" / f"{run_id}.pkl"
