"""`hdbscan`: density-based segments, K found by the data; users in no dense region are noise (segment -1).

A vector is placed in the nearest segment when it lies within that segment's radius (the distance from its
centroid to its farthest member), otherwise it is noise: the fit's users and new users follow the same rule.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import HDBSCAN

from tasks.cluster.base import centroids_of, nearest_centroid, relabel_by_size
from tasks.fitted import Saveable


class HdbscanClusterer(Saveable):
    name = "hdbscan"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, vectors: np.ndarray, k: int = 0) -> Self:
        """`k` is ignored: the number of segments comes from the data."""
        min_size = max(5, len(vectors) // 100)
        return self.set_segments(vectors, HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(vectors))

    def set_segments(self, vectors: np.ndarray, labels: np.ndarray) -> Self:
        labels = relabel_by_size(labels)
        self.centroids = centroids_of(vectors, labels)
        self.k = len(self.centroids)
        self.radii = np.array(
            [np.linalg.norm(vectors[labels == s] - self.centroids[s], axis=1).max() for s in range(self.k)]
        )
        self.labels_ = self.predict(vectors)[0] if self.k else labels
        return self

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.k:
            return np.full(len(vectors), -1), np.full(len(vectors), np.nan)
        labels, distances = nearest_centroid(vectors, self.centroids)
        noise = distances > self.radii[labels] * (1 + 1e-6)  # the farthest member stays in, despite rounding
        return np.where(noise, -1, labels), np.where(noise, np.nan, distances)
