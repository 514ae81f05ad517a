"""`fusion`: chosen families side by side, each block L2-normalised per row and scaled by sqrt(its weight), so a
block's share of every squared distance is its weight, whatever its width or scale. By default behaviour, svd
and, when most items have a title, text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pyarrow as pa
from sklearn.preprocessing import normalize

from tasks.embed.base import Embedder, Embedding, FitOptions
from tasks.embed.item_text import VectorStore
from tasks.embed.text import TextEmbedder
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

DEFAULT_FAMILIES = ("behaviour", "svd")
WITH_TITLES = ("behaviour", "svd", "text")


class FusionEmbedder(Saveable):
    name = "fusion"

    def __init__(
        self,
        seed: int = 0,
        families: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        store: VectorStore | None = None,
        name: str | None = None,
    ) -> None:
        if families is not None and (not families or "fusion" in families):
            raise ValueError("fusion needs one or more families other than fusion itself")
        if weights is not None and (
            families is None or len(weights) != len(families) or min(weights, default=0) <= 0
        ):
            raise ValueError("fusion weights: one positive weight per named family")
        self.seed = seed
        if name is not None:
            self.name = name  # what its embedding is called (the families table, segment_runs.embedding)
        self.families = tuple(families) if families is not None else None
        self.weights = tuple(float(w) for w in weights) if weights is not None else None
        self.store = store  # for the text block's item vectors; never saved
        self.options: FitOptions | None = None  # how the learned parts train; never saved

    def configure(self, options: FitOptions) -> Self:
        self.options = options
        return self

    def fit(self, features: UserFeatures) -> Self:
        # The registry lists fusion itself, so it is looked up only when a fusion is fitted.
        from tasks.embed.registry import make_embedder

        self.chosen = self.families or (WITH_TITLES if has_titles(features.items) else DEFAULT_FAMILIES)
        self.chosen_weights = self.weights or (1.0,) * len(self.chosen)
        self.parts: list[Embedder] = []
        for family in self.chosen:
            part = make_embedder(family, self.seed, self.options)
            if isinstance(part, TextEmbedder) and self.store is not None:
                part.store = self.store
            self.parts.append(part.fit(features))
        return self

    def transform(self, features: UserFeatures) -> Embedding:
        blocks = [
            _unit_rows(part.transform(features).vectors) * np.sqrt(weight)
            for part, weight in zip(self.parts, self.chosen_weights, strict=True)
        ]
        return Embedding(self.name, features.users, np.hstack(blocks).astype(np.float32))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("store", "options")} | {
            "store": None,
            "options": None,
        }


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (zero rows stay zero); no rows stay no rows, which sklearn's normalize refuses."""
    return normalize(vectors) if len(vectors) else vectors


def has_titles(items: pa.Table) -> bool:
    """Whether at least half of the items have a title."""
    titled = sum(1 for title in items.column("title").to_pylist() if title and title.strip())
    return len(items) > 0 and 2 * titled >= len(items)
