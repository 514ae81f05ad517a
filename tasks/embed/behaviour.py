"""`behaviour`: the behaviour features (counts log-scaled, category TF-IDF), standardised by fitted statistics."""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
from sklearn.preprocessing import StandardScaler

from tasks.embed.base import Embedding
from tasks.features.user_features import UserFeatures
from tasks.fitted import Saveable

LOG_SCALED = (
    "n_events",
    "n_items",
    "active_days",
    "recency_days",
    "monetary",
    "n_sessions",
    "events_per_session",
)


class BehaviourEmbedder(Saveable):
    name = "behaviour"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, features: UserFeatures) -> Self:
        raw = _matrix(features.frame, fills=None)
        self.columns = [c for c in features.frame.columns if c != "user_id"]
        self.fills = {
            name: (
                0.0 if name.startswith("cat:") or np.isnan(raw[:, i]).all() else float(np.nanmean(raw[:, i]))
            )
            for i, name in enumerate(self.columns)
        }
        self.scaler = StandardScaler().fit(_matrix(features.frame, self.fills))
        # Columns without variance carry nothing and only dilute distances.
        self.keep = np.flatnonzero(self.scaler.var_ > 0) if (self.scaler.var_ > 0).any() else np.arange(1)
        return self

    def transform(self, features: UserFeatures) -> Embedding:
        matrix = _matrix(features.frame.select("user_id", *self.columns), self.fills)
        scaled = self.scaler.transform(matrix)[:, self.keep]
        return Embedding(self.name, features.users, np.nan_to_num(scaled).astype(np.float32))


def _matrix(frame: pl.DataFrame, fills: dict[str, float] | None) -> np.ndarray:
    """The feature columns as floats, counts log-scaled; nulls filled (left as NaN when `fills` is None)."""
    columns = []
    for name in frame.columns:
        if name == "user_id":
            continue
        column = frame[name].cast(pl.Float64)
        if name in LOG_SCALED:
            column = column.clip(lower_bound=0).log1p()
        values = column.fill_nan(None).to_numpy().astype(np.float64)
        if fills is not None:
            values = np.where(np.isnan(values), fills[name], values)
        columns.append(values)
    return np.column_stack(columns) if columns else np.zeros((frame.height, 1))
