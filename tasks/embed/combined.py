"""`combined` (the default): behaviour and svd side by side, each block scaled so its rows carry the same
total weight: who the user is (how they shop) and what they like."""

from __future__ import annotations

from typing import Self

import numpy as np

from tasks.embed.base import Embedding
from tasks.embed.behaviour import BehaviourEmbedder
from tasks.embed.svd import SvdEmbedder
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable


class CombinedEmbedder(Saveable):
    name = "combined"

    def __init__(self, seed: int = 0) -> None:
        self.behaviour = BehaviourEmbedder(seed)
        self.svd = SvdEmbedder(seed)

    def fit(self, features: UserFeatures) -> Self:
        self.behaviour.fit(features)
        self.svd.fit(features)
        return self

    def transform(self, features: UserFeatures) -> Embedding:
        behaviour = self.behaviour.transform(features).vectors
        svd = self.svd.transform(features).vectors
        left = behaviour / np.sqrt(max(behaviour.shape[1], 1))
        return Embedding(self.name, features.users, np.hstack([left, svd]).astype(np.float32))
