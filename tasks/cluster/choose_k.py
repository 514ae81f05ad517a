"""The K rule (`--k auto`), with interpretability and usefulness both in view.

Sweep K on the training data, score each K by silhouette (are the groups distinct?) and by inner-validation
NDCG@10 of the segment top lists (do they predict what members do next?). Among the K whose silhouette is at
least half the best one, take the smallest K whose usefulness is within 2% of the most useful: more segments
only when they clearly predict better.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

USEFULNESS_TOLERANCE = 0.02


def choose_k(sweep: list[dict]) -> int:
    """The rule above over sweep rows {k, silhouette, usefulness}."""
    best_silhouette = max(row["silhouette"] for row in sweep)
    eligible = [row for row in sweep if row["silhouette"] >= 0.5 * best_silhouette] or sweep
    best_usefulness = max(row["usefulness"] for row in eligible)
    good_enough = [
        row for row in eligible if row["usefulness"] >= (1 - USEFULNESS_TOLERANCE) * best_usefulness
    ]
    return int(min(row["k"] for row in good_enough))


def silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 3000) -> float:
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(vectors, labels, sample_size=min(sample, len(vectors)), random_state=seed))
