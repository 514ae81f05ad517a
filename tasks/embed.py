"""Embeddings: a user-by-dimension table `emb_<name>` that clustering reads.

Classical embeddings live here: `behaviour` (the scaled behaviour features), `svd` (TruncatedSVD of the
TF-IDF-weighted user-item matrix) and `combined` (both, each block scaled to the same total weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import StandardScaler, normalize

from tasks.features import load_interactions, user_feature_frame
from tasks.warehouse import create_table_from_frame

EMBEDDINGS = ("behaviour", "svd", "combined")
LOG_SCALED = (
    "n_events",
    "n_items",
    "active_days",
    "recency_days",
    "monetary",
    "n_sessions",
    "events_per_session",
)


@dataclass
class Embedding:
    name: str
    user_ids: np.ndarray
    vectors: np.ndarray  # (n_users, dim), float32


def behaviour_embedding(con: duckdb.DuckDBPyConnection) -> Embedding:
    frame = user_feature_frame(con)
    users = frame["user_id"].to_numpy()
    numeric = frame.drop("user_id")
    columns = []
    for name in numeric.columns:
        column = numeric[name].cast(pl.Float64)
        if name in LOG_SCALED:
            column = column.clip(lower_bound=0).log1p()
        fill = column.mean() if column.null_count() < len(column) else 0.0
        columns.append(column.fill_null(0.0 if name.startswith("cat:") else fill).fill_nan(0.0).to_numpy())
    matrix = np.column_stack(columns) if columns else np.zeros((len(users), 1))
    scaled = StandardScaler().fit_transform(matrix)
    scaled = scaled[:, np.nanstd(scaled, axis=0) > 0] if scaled.shape[1] > 1 else scaled
    return Embedding("behaviour", users, np.nan_to_num(scaled).astype(np.float32))


def svd_embedding(con: duckdb.DuckDBPyConnection, n_components: int = 32, seed: int = 0) -> Embedding:
    interactions = load_interactions(con)
    users, matrix = interactions.users, interactions.weights
    # TF-IDF: dampen heavy users' weights (log) and down-weight items everyone touches (idf).
    tf = matrix.copy()
    tf.data = np.log1p(tf.data)
    document_frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
    idf = np.log((1 + matrix.shape[0]) / (1 + document_frequency)) + 1
    weighted = tf @ sp.diags(idf)
    k = max(1, min(n_components, min(weighted.shape) - 1))
    vectors = TruncatedSVD(n_components=k, random_state=seed).fit_transform(weighted)
    return Embedding("svd", users, normalize(vectors).astype(np.float32))


def combined_embedding(behaviour: Embedding, svd: Embedding) -> Embedding:
    """Both blocks side by side, each scaled so its rows carry the same total weight."""
    position = {u: i for i, u in enumerate(svd.user_ids)}
    svd_rows = np.zeros((len(behaviour.user_ids), svd.vectors.shape[1]), dtype=np.float32)
    for i, user in enumerate(behaviour.user_ids):
        j = position.get(user)
        if j is not None:
            svd_rows[i] = svd.vectors[j]
    left = behaviour.vectors / np.sqrt(max(behaviour.vectors.shape[1], 1))
    return Embedding("combined", behaviour.user_ids, np.hstack([left, svd_rows]).astype(np.float32))


def embed_users(con: duckdb.DuckDBPyConnection, name: str, seed: int = 0) -> Embedding:
    """Build one named embedding from the feature tables."""
    if name == "behaviour":
        return behaviour_embedding(con)
    if name == "svd":
        return svd_embedding(con, seed=seed)
    if name == "combined":
        return combined_embedding(behaviour_embedding(con), svd_embedding(con, seed=seed))
    raise ValueError(f"unknown embedding {name!r}; choose one of {', '.join(EMBEDDINGS)}")


def write_embedding(con: duckdb.DuckDBPyConnection, embedding: Embedding) -> str:
    """Store the embedding as `emb_<name>(user_id, dim_0, ...)`; returns the table name."""
    table = f"emb_{embedding.name}"
    frame = pl.DataFrame({"user_id": embedding.user_ids.astype(str)}).with_columns(
        [pl.Series(f"dim_{i}", embedding.vectors[:, i]) for i in range(embedding.vectors.shape[1])]
    )
    return create_table_from_frame(con, table, frame)
