"""Fitting segments: features -> embedding -> clustering, with K chosen on the training data only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
from pydantic import BaseModel, Field

from tasks.cluster import CLUSTERERS, Clustering, choose_k, fit_clusters, silhouette
from tasks.embed import EMBEDDINGS, Embedding, embed_users, write_embedding
from tasks.evaluate import (
    agreement,
    intrinsic_metrics,
    load_heldout,
    make_holdout,
    segment_usefulness,
)
from tasks.features import FEATURE_TABLES, InteractionWeights, build_features, load_interactions, use_events

SWEEP_SAMPLE = 5_000


class SegmentationError(ValueError):
    """The data cannot be segmented as asked (e.g. fewer users than segments)."""


class SegmentSettings(BaseModel):
    """How segments are made. The defaults are what `segflow run` uses."""

    embedding: Literal[EMBEDDINGS] = "combined"  # type: ignore[valid-type]
    clusterer: Literal[CLUSTERERS] = "kmeans"  # type: ignore[valid-type]
    k: int | Literal["auto"] = "auto"
    k_min: int = Field(2, ge=2)
    k_max: int = Field(30, ge=2)
    seed: int = 0
    n_recommendations: int = Field(100, ge=1)
    weights: InteractionWeights = Field(default_factory=InteractionWeights)


@dataclass
class SegmentFit:
    embedding: Embedding
    clustering: Clustering
    sweep: list[dict] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return self.clustering.labels


def sweep_k(
    con: duckdb.DuckDBPyConnection, settings: SegmentSettings, exclude: tuple[str, ...]
) -> list[dict]:
    """Score K = k_min..k_max by silhouette and inner-validation NDCG@10, on `seg_events` less `exclude`."""
    use_events(con, *exclude)
    make_holdout(con, "seg_inner_holdout")
    use_events(con, *exclude, "seg_inner_holdout")
    build_features(con, settings.weights)
    embedding = embed_users(con, settings.embedding, settings.seed)
    train = load_interactions(con)
    heldout = load_heldout(con, "seg_inner_holdout")
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(
        rng.choice(len(embedding.user_ids), size=min(SWEEP_SAMPLE, len(embedding.user_ids)), replace=False)
    )
    vectors, users = embedding.vectors[sample], embedding.user_ids[sample]
    rows = []
    n_distinct = len(np.unique(vectors, axis=0))  # more segments than distinct users cannot be told apart
    for k in range(settings.k_min, max(settings.k_min, min(settings.k_max, n_distinct - 1)) + 1):
        clustering = fit_clusters(vectors, settings.clusterer, k, settings.seed)
        useful = segment_usefulness(train, heldout, users, clustering.labels)
        rows.append(
            {
                "k": k,
                "silhouette": silhouette(vectors, clustering.labels, settings.seed),
                "usefulness": useful["segments/ndcg@10"],
                "recall@10": useful["segments/recall@10"],
            }
        )
    return rows


def fit_segments(
    con: duckdb.DuckDBPyConnection, settings: SegmentSettings, exclude: tuple[str, ...] = ()
) -> SegmentFit:
    """Segments of the users in `events` less the `exclude` holdout tables."""
    use_events(con, *exclude)
    n_users = con.execute("select count(distinct user_id) from seg_events").fetchall()[0][0]
    needed = 2 * settings.k_min if settings.k == "auto" else max(2, int(settings.k))
    if n_users < needed:
        raise SegmentationError(f"{n_users} users with events: segmenting needs at least {needed}")
    sweep: list[dict] = []
    k = settings.k
    if settings.clusterer == "hdbscan":
        k = 0
    elif k == "auto":
        sweep = sweep_k(con, settings, exclude)
        k = choose_k(sweep)
    use_events(con, *exclude)
    build_features(con, settings.weights)
    embedding = embed_users(con, settings.embedding, settings.seed)
    clustering = fit_clusters(embedding.vectors, settings.clusterer, int(k), settings.seed)
    clustering.sweep = sweep
    return SegmentFit(embedding, clustering, sweep)


def store_fit(con: duckdb.DuckDBPyConnection, fit: SegmentFit) -> list[str]:
    """Keep the final fit's feature tables and its embedding (`emb_<name>`) in the warehouse for the models."""
    for table in FEATURE_TABLES:
        con.execute(f"create or replace table main.{table} as select * from temp.{table}")
    return [*FEATURE_TABLES, write_embedding(con, fit.embedding)]


def evaluate_on_holdout(con: duckdb.DuckDBPyConnection, settings: SegmentSettings) -> dict[str, float]:
    """The recommendation protocol (tasks/evaluate.py): fit on the rest, score against the held-out items."""
    use_events(con)
    n_heldout = make_holdout(con, "seg_holdout")
    fit = fit_segments(
        con, settings, ("seg_holdout",)
    )  # leaves the feature tables built on the training view
    train = load_interactions(con)
    heldout = load_heldout(con, "seg_holdout")
    # Without users that have >= 5 distinct items there is nothing to hold out: usefulness is not measured.
    metrics = segment_usefulness(train, heldout, fit.embedding.user_ids, fit.labels) if heldout else {}
    metrics |= {"holdout/n_items": float(n_heldout), "holdout/k": float(fit.clustering.k)}
    use_events(con)
    return metrics


def describe_fit(
    fit: SegmentFit, settings: SegmentSettings, truth: dict[str, int] | None
) -> dict[str, float]:
    """Intrinsic metrics, stability (ARI of a refit with another seed) and, with planted truth, ARI / NMI."""
    vectors, labels = fit.embedding.vectors, fit.labels
    metrics = {f"intrinsic/{k}": v for k, v in intrinsic_metrics(vectors, labels, settings.seed).items()}
    refit = fit_clusters(vectors, settings.clusterer, fit.clustering.k, settings.seed + 1)
    metrics["stability/ari"] = agreement(labels, refit.labels)["ari"]
    if truth:
        known = [i for i, u in enumerate(fit.embedding.user_ids) if str(u) in truth]
        if known:
            planted = np.array([truth[str(fit.embedding.user_ids[i])] for i in known])
            scores = agreement(planted, labels[known])
            metrics |= {"planted/ari": scores["ari"], "planted/nmi": scores["nmi"]}
    metrics["k"] = float(fit.clustering.k)
    return metrics


def distances_to_own_centroid(fit: SegmentFit) -> np.ndarray:
    labels, vectors, centroids = fit.labels, fit.embedding.vectors, fit.clustering.centroids
    distances = np.full(len(labels), np.nan)
    valid = labels >= 0
    distances[valid] = np.linalg.norm(vectors[valid] - centroids[labels[valid]], axis=1)
    return distances
