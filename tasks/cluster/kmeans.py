"""`kmeans` (default): K-Means, MiniBatchKMeans past 50,000 users; new users go to the nearest centroid."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from tasks.cluster.base import CentroidSegments, nearest_centroid
from tasks.fitted import Saveable

MINIBATCH_ABOVE = 50_000


class KMeansClusterer(CentroidSegments, Saveable):
    name = "kmeans"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, vectors: np.ndarray, k: int) -> Self:
        if len(vectors) > MINIBATCH_ABOVE:
            model = MiniBatchKMeans(n_clusters=k, random_state=self.seed, n_init=3, batch_size=4096)
        else:
            model = KMeans(n_clusters=k, random_state=self.seed, n_init=4)
        return self.set_segments(vectors, model.fit_predict(vectors))

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroid(vectors, self.centroids)
