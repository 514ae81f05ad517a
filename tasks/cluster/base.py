"""The Clusterer protocol, and the nearest-centroid assignment they share."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self

import numpy as np

ASSIGN_CHUNK = 65_536  # rows per block: memory stays at chunk x k, never n x k x d


class Clusterer(Protocol):
    """Learns segments from the fit's vectors; `predict` gives any vectors a segment and the distance to it."""

    name: str
    k: int
    centroids: np.ndarray  # (n_segments, dim); row s is segment s
    labels_: np.ndarray  # the fit's own labels, per row of the vectors it was fitted on

    def fit(self, vectors: np.ndarray, k: int) -> Self: ...

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def set_segments(self, vectors: np.ndarray, labels: np.ndarray) -> Self: ...

    def save(self, path: Path | str) -> Path: ...

    @classmethod
    def load(cls, path: Path | str) -> Self: ...


class CentroidSegments:
    """Segments defined by their centroids: `set_segments` (re)defines them from labelled vectors."""

    def set_segments(self, vectors: np.ndarray, labels: np.ndarray) -> Self:
        self.labels_ = relabel_by_size(labels)
        self.centroids = centroids_of(vectors, self.labels_)
        self.k = len(self.centroids)
        return self


def enforce_min_size(
    clusterer: Clusterer, vectors: np.ndarray, min_size: int, max_rounds: int = 10
) -> Clusterer:
    """Merge segments smaller than `min_size` (as `predict` places the vectors) into their nearest neighbour
    and redefine the centroids, until every segment is big enough (or only one is left)."""
    for _ in range(max_rounds):
        labels = clusterer.predict(vectors)[0]
        sizes = np.bincount(labels[labels >= 0], minlength=clusterer.k)
        if clusterer.k < 2 or sizes.min() >= min_size:
            break
        clusterer.set_segments(vectors, merge_small_segments(vectors, labels, min_size))
    return clusterer


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest centroid of each vector and the Euclidean distance to it, in blocks."""
    labels = np.empty(len(vectors), dtype=np.int64)
    distances = np.empty(len(vectors), dtype=np.float64)
    c = centroids.astype(np.float64)
    c_norms = (c**2).sum(axis=1)
    for start in range(0, len(vectors), ASSIGN_CHUNK):
        x = vectors[start : start + ASSIGN_CHUNK].astype(np.float64)
        squared = (x**2).sum(axis=1)[:, None] - 2 * x @ c.T + c_norms[None, :]
        best = squared.argmin(axis=1)
        labels[start : start + len(x)] = best
        distances[start : start + len(x)] = np.sqrt(np.maximum(squared[np.arange(len(x)), best], 0))
    return labels, distances


def centroids_of(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean vector of each segment 0..max(labels); noise (-1) is left out."""
    n_segments = int(labels.max()) + 1 if len(labels) and (labels >= 0).any() else 0
    if not n_segments:
        return np.zeros((0, vectors.shape[1]))
    return np.vstack([vectors[labels == s].mean(axis=0) for s in range(n_segments)])


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Segment 0 is the largest, 1 the next, ...; noise stays -1. Stable ids make runs comparable."""
    valid = labels[labels >= 0]
    if not len(valid):
        return labels
    values, counts = np.unique(valid, return_counts=True)
    order = values[np.lexsort((values, -counts))]
    mapping = np.full(int(labels.max()) + 1, -1)
    mapping[order] = np.arange(len(order))
    return np.where(labels >= 0, mapping[np.maximum(labels, 0)], -1)


def default_min_segment_size(n_users: int) -> int:
    """max(20 users, 1% of users): no published segment can single out a handful of people."""
    return max(20, int(np.ceil(0.01 * n_users)))


def merge_small_segments(vectors: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels where every segment smaller than `min_size` is merged, smallest first, into the segment whose
    centroid is nearest to its own; ids are then renumbered by size. Noise (-1) stays noise."""
    labels = labels.copy()
    while True:
        segments, sizes = np.unique(labels[labels >= 0], return_counts=True)
        if len(segments) < 2 or sizes.min() >= min_size:
            return relabel_by_size(labels)
        small = segments[sizes.argmin()]
        others = segments[segments != small]
        centroid = vectors[labels == small].mean(axis=0)
        other_centroids = np.vstack([vectors[labels == s].mean(axis=0) for s in others])
        labels[labels == small] = others[np.linalg.norm(other_centroids - centroid, axis=1).argmin()]
