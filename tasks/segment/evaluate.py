"""What a fitted segmenter is worth: usefulness on the holdout, intrinsic quality, stability, planted truth."""

from __future__ import annotations

import numpy as np

from tasks.cluster.base import Clusterer
from tasks.cluster.registry import make_clusterer
from tasks.embed.base import Embedding
from tasks.evaluate.holdout import EventSplit
from tasks.evaluate.metrics import agreement, intrinsic_metrics, segment_usefulness
from tasks.features.interactions import interaction_matrix
from tasks.features.user_features import UserFeatures


def score_holdout(
    features: UserFeatures, embedding: Embedding, clusterer: Clusterer, split: EventSplit
) -> dict[str, float]:
    """The recommendation protocol: segments fit on the training part, their lists scored against the
    held-out items, next to popularity. Without users of >= 5 distinct items, usefulness is not measured."""
    labels = clusterer.predict(embedding.vectors)[0]
    train = interaction_matrix(features.interactions)
    metrics = segment_usefulness(train, split.heldout, embedding.user_ids, labels) if split.heldout else {}
    return metrics | {"holdout/n_items": float(split.n_heldout_items), "holdout/k": float(clusterer.k)}


def describe_segments(
    embedding: Embedding,
    labels: np.ndarray,
    clusterer_name: str,
    k: int,
    seed: int,
    truth: dict[str, int] | None,
) -> dict[str, float]:
    """Intrinsic metrics, stability (ARI against a refit with another seed) and, with planted truth, ARI / NMI."""
    vectors = embedding.vectors
    metrics = {f"intrinsic/{name}": v for name, v in intrinsic_metrics(vectors, labels, seed).items()}
    refit = make_clusterer(clusterer_name, seed + 1).fit(vectors, k)
    metrics["stability/ari"] = agreement(labels, refit.predict(vectors)[0])["ari"]
    if truth:
        known = [i for i, u in enumerate(embedding.user_ids) if str(u) in truth]
        if known:
            planted = np.array([truth[str(embedding.user_ids[i])] for i in known])
            scores = agreement(planted, labels[known])
            metrics |= {"planted/ari": scores["ari"], "planted/nmi": scores["nmi"]}
    metrics["k"] = float(k)
    return metrics
