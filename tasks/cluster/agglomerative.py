"""`agglomerative`: Ward linkage on a sample of 5,000 (it is quadratic), then every user to the nearest
sample centroid."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from tasks.cluster.base import CentroidSegments, centroids_of, nearest_centroid
from tasks.fitted import Saveable

SAMPLE = 5_000


class AgglomerativeClusterer(CentroidSegments, Saveable):
    name = "agglomerative"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, vectors: np.ndarray, k: int) -> Self:
        rng = np.random.default_rng(self.seed)
        sample = rng.choice(len(vectors), size=min(SAMPLE, len(vectors)), replace=False)
        sample_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors[sample])
        return self.set_segments(
            vectors, nearest_centroid(vectors, centroids_of(vectors[sample], sample_labels))[0]
        )

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroid(vectors, self.centroids)
