"""`agglomerative`: Ward linkage on a sample of 5,000 (it is quadratic), then every user to the nearest
sample centroid."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from tasks.cluster.base import centroids_of, nearest_centroid, relabel_by_size
from tasks.fitted import Saveable

SAMPLE = 5_000


class AgglomerativeClusterer(Saveable):
    name = "agglomerative"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, vectors: np.ndarray, k: int) -> Self:
        rng = np.random.default_rng(self.seed)
        sample = rng.choice(len(vectors), size=min(SAMPLE, len(vectors)), replace=False)
        sample_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors[sample])
        self.labels_ = relabel_by_size(
            nearest_centroid(vectors, centroids_of(vectors[sample], sample_labels))[0]
        )
        self.centroids = centroids_of(vectors, self.labels_)
        self.k = len(self.centroids)
        return self

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroid(vectors, self.centroids)
