"""The Embedder protocol and the Embedding it produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import polars as pl

from tasks.features.user_features import UserFeatures


@dataclass(frozen=True)
class Embedding:
    name: str
    user_ids: np.ndarray
    vectors: np.ndarray  # (n_users, dim), float32; row i is user_ids[i]


class Embedder(Protocol):
    """Learns from the features of the fit's users; embeds any users' features, old or new."""

    name: str

    def fit(self, features: UserFeatures) -> Self: ...

    def transform(self, features: UserFeatures) -> Embedding: ...

    def save(self, path: Path | str) -> Path: ...

    @classmethod
    def load(cls, path: Path | str) -> Self: ...


def embedding_frame(embedding: Embedding) -> pl.DataFrame:
    """`user_id, dim_0, dim_1, ...`: the embedding as a table."""
    return pl.DataFrame({"user_id": embedding.user_ids.astype(str)}).with_columns(
        [pl.Series(f"dim_{i}", embedding.vectors[:, i]) for i in range(embedding.vectors.shape[1])]
    )
