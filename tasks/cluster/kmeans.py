"""`kmeans` (default): K-Means, MiniBatchKMeans past 50,000 users; new users go to the nearest centroid."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from tasks.cluster.base import centroids_of, nearest_centroid, relabel_by_size
from tasks.fitted import Saveable

MINIBATCH_ABOVE = 50_000


class KMeansClusterer(Saveable):
    name = "kmeans"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, vectors: np.ndarray, k: int) -> Self:
        if len(vectors) > MINIBATCH_ABOVE:
            model = MiniBatchKMeans(n_clusters=k, random_state=self.seed, n_init=3, batch_size=4096)
        else:
            model = KMeans(n_clusters=k, random_state=self.seed, n_init=4)
        self.labels_ = relabel_by_size(model.fit_predict(vectors))
        self.centroids = centroids_of(vectors, self.labels_)
        self.k = len(self.centroids)
        return self

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroid(vectors, self.centroids)
