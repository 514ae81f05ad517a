"""Every clusterer family by name: a new family is one module and one entry here (by where its class lives,
imported on first use, as in tasks/embed/registry.py: DEC's imports Lightning)."""

from __future__ import annotations

import numpy as np

from tasks.cluster.base import Clusterer
from tasks.embed.base import FitOptions
from tasks.embed.registry import load_class

CLUSTERERS: dict[str, str] = {
    "kmeans": "tasks.cluster.kmeans:KMeansClusterer",
    "hdbscan": "tasks.cluster.hdbscan:HdbscanClusterer",
    "agglomerative": "tasks.cluster.agglomerative:AgglomerativeClusterer",
    "dec": "tasks.cluster.dec:DecClusterer",
}
# Families that find the number of segments themselves: no K sweep.
FINDS_ITS_OWN_K = ("hdbscan",)
# Families whose K is swept with another, cheaper family: DEC refines k-means (started from it), so K is
# chosen on k-means' structure; a DEC fit per K and seed would cost minutes each.
SWEPT_WITH = {"dec": "kmeans"}


def sweep_family(name: str) -> str:
    """The clusterer family the K sweep fits for `name`."""
    return SWEPT_WITH.get(name, name)


def make_clusterer(name: str, seed: int = 0, options: FitOptions | None = None) -> Clusterer:
    """A new, unfitted clusterer of the family `name`; one that trains (DEC) trains as `options` say."""
    if name not in CLUSTERERS:
        raise ValueError(f"unknown clusterer {name!r}; choose one of {', '.join(CLUSTERERS)}")
    clusterer = load_class(CLUSTERERS[name])(seed)
    if options is not None and hasattr(clusterer, "configure"):
        clusterer.configure(options)
    return clusterer


def fit_clusters(vectors: np.ndarray, name: str, k: int, seed: int = 0) -> Clusterer:
    """A clusterer of the family `name` fitted on `vectors` with `k` segments."""
    return make_clusterer(name, seed).fit(vectors, k)
