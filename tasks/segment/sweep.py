"""The K sweep: K = k_min..k_max scored by silhouette and inner-validation NDCG@10, on training events only
(the rule that picks K from the sweep is tasks/cluster/choose_k.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tasks.cluster.choose_k import silhouette
from tasks.cluster.registry import make_clusterer
from tasks.evaluate.holdout import split_events
from tasks.evaluate.metrics import segment_usefulness
from tasks.features.interactions import interaction_matrix
from tasks.segment.segmenter import fit_embedder, fit_features
from tasks.segment.settings import SegmentSettings

SWEEP_SAMPLE = 5_000


def sweep_k(events: pa.Table, items: pa.Table, settings: SegmentSettings) -> list[dict]:
    """One row per K: {k, silhouette, usefulness (NDCG@10), recall@10}, on an inner split of `events`."""
    inner = split_events(events, settings.seed)
    _, features = fit_features(inner.train, items, settings)
    _, embedding = fit_embedder(features, settings)
    train = interaction_matrix(features.interactions)
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(
        rng.choice(len(embedding.user_ids), size=min(SWEEP_SAMPLE, len(embedding.user_ids)), replace=False)
    )
    vectors, users = embedding.vectors[sample], embedding.user_ids[sample]
    n_distinct = len(np.unique(vectors, axis=0))  # more segments than distinct users cannot be told apart
    rows = []
    for k in range(settings.k_min, max(settings.k_min, min(settings.k_max, n_distinct - 1)) + 1):
        labels = make_clusterer(settings.clusterer, settings.seed).fit(vectors, k).labels_
        useful = segment_usefulness(train, inner.heldout, users, labels)
        rows.append(
            {
                "k": k,
                "silhouette": silhouette(vectors, labels, settings.seed),
                "usefulness": useful["segments/ndcg@10"],
                "recall@10": useful["segments/recall@10"],
            }
        )
    return rows
