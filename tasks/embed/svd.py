"""`svd`: TruncatedSVD of the TF-IDF-weighted user-item matrix, rows L2-normalised. The item vocabulary,
the item idf and the SVD are fitted; a new user is folded in through the fitted item vectors."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import normalize

from tasks.embed.base import Embedding
from tasks.features.interactions import interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable


class SvdEmbedder(Saveable):
    name = "svd"

    def __init__(self, seed: int = 0, n_components: int = 32) -> None:
        self.seed = seed
        self.n_components = n_components

    def fit(self, features: UserFeatures) -> Self:
        self.items = np.array(sorted(features.interactions["item_id"].unique().to_list()), dtype=object)
        matrix = interaction_matrix(features.interactions, users=features.users, items=self.items).weights
        # idf: items everyone touches say little about a user's taste.
        document_frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
        self.idf = np.log((1 + matrix.shape[0]) / (1 + document_frequency)) + 1
        weighted = self._weighted(matrix)
        if weighted.shape[1] < 2:  # TruncatedSVD needs two items; one item is its own (trivial) taste
            self.svd = None
            return self
        k = max(1, min(self.n_components, min(weighted.shape) - 1))
        self.svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(weighted)
        return self

    def transform(self, features: UserFeatures) -> Embedding:
        matrix = interaction_matrix(features.interactions, users=features.users, items=self.items).weights
        weighted = self._weighted(matrix)
        vectors = weighted.toarray() if self.svd is None else self.svd.transform(weighted)
        return Embedding(self.name, features.users, normalize(vectors).astype(np.float32))

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """(len(items), dimensions): each item's vector in the users' space, so that a user's vector times an
        item's scores how the user's taste reconstructs that item (0 for items the fit never saw)."""
        index = {item: i for i, item in enumerate(self.items)}
        positions = np.array([index.get(item, -1) for item in items], dtype=np.int64)
        basis = np.eye(len(self.items)) if self.svd is None else self.svd.components_.T
        vectors = np.zeros((len(items), basis.shape[1]))
        vectors[positions >= 0] = basis[positions[positions >= 0]]
        return vectors

    def _weighted(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        tf = matrix.copy()
        tf.data = np.log1p(tf.data)  # dampen heavy users' weights
        return tf @ sp.diags(self.idf)
