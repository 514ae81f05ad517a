"""Clustering users on an embedding: K-Means (default), HDBSCAN and agglomerative, and the choice of K.

The K rule (`--k auto`), with interpretability and usefulness both in view: sweep K on the training data,
score each K by silhouette (are the groups distinct?) and by inner-validation NDCG@10 of the segment top
lists (do they predict what members do next?). Among the K whose silhouette is at least half the best one,
take the smallest K whose usefulness is within 2% of the most useful: more segments only when they clearly
predict better.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score

CLUSTERERS = ("kmeans", "hdbscan", "agglomerative")
MINIBATCH_ABOVE = 50_000
AGGLOMERATIVE_SAMPLE = 5_000
USEFULNESS_TOLERANCE = 0.02


@dataclass
class Clustering:
    labels: np.ndarray
    centroids: np.ndarray  # (n_segments, dim); row s is segment s
    k: int
    sweep: list[dict] = field(default_factory=list)


def _centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    segments = [s for s in range(int(labels.max()) + 1)] if (labels >= 0).any() else []
    return (
        np.vstack([vectors[labels == s].mean(axis=0) for s in segments])
        if segments
        else np.zeros((0, vectors.shape[1]))
    )


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Segment 0 is the largest, 1 the next, ...; noise stays -1. Stable ids make runs comparable."""
    valid = labels[labels >= 0]
    if not len(valid):
        return labels
    values, counts = np.unique(valid, return_counts=True)
    order = values[np.lexsort((values, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(label, -1) for label in labels])


def fit_kmeans(vectors: np.ndarray, k: int, seed: int = 0) -> Clustering:
    if len(vectors) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=4)
    labels = _relabel_by_size(model.fit_predict(vectors))
    return Clustering(labels, _centroids(vectors, labels), k)


def fit_hdbscan(vectors: np.ndarray, seed: int = 0) -> Clustering:
    min_size = max(5, len(vectors) // 100)
    labels = _relabel_by_size(HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(vectors))
    return Clustering(labels, _centroids(vectors, labels), int(labels.max()) + 1)


def fit_agglomerative(vectors: np.ndarray, k: int, seed: int = 0) -> Clustering:
    """Ward linkage on a sample (it is quadratic), then every user to the nearest sample centroid."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(vectors), size=min(AGGLOMERATIVE_SAMPLE, len(vectors)), replace=False)
    sample_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors[sample])
    centroids = np.vstack([vectors[sample][sample_labels == s].mean(axis=0) for s in range(k)])
    labels = _relabel_by_size(assign_nearest(vectors, centroids)[0])
    return Clustering(labels, _centroids(vectors, labels), k)


def assign_nearest(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and the distance to it, for each vector."""
    distances = np.sqrt(((vectors[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
    labels = distances.argmin(axis=1)
    return labels, distances[np.arange(len(vectors)), labels]


def fit_clusters(vectors: np.ndarray, clusterer: str, k: int, seed: int = 0) -> Clustering:
    if clusterer == "kmeans":
        return fit_kmeans(vectors, k, seed)
    if clusterer == "hdbscan":
        return fit_hdbscan(vectors, seed)
    if clusterer == "agglomerative":
        return fit_agglomerative(vectors, k, seed)
    raise ValueError(f"unknown clusterer {clusterer!r}; choose one of {', '.join(CLUSTERERS)}")


def choose_k(sweep: list[dict]) -> int:
    """The documented rule (module doc) over sweep rows {k, silhouette, usefulness}."""
    best_silhouette = max(row["silhouette"] for row in sweep)
    eligible = [row for row in sweep if row["silhouette"] >= 0.5 * best_silhouette] or sweep
    best_usefulness = max(row["usefulness"] for row in eligible)
    good_enough = [
        row for row in eligible if row["usefulness"] >= (1 - USEFULNESS_TOLERANCE) * best_usefulness
    ]
    return int(min(row["k"] for row in good_enough))


def silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 3000) -> float:
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(vectors, labels, sample_size=min(sample, len(vectors)), random_state=seed))
