"""The K sweeps, on an inner split of the training events only (the rules that pick K from them are in
tasks/cluster/choose_k.py):

- people: K = k_min..k_max on the behaviour-and-taste embedding, each scored by silhouette, stability (mean ARI
  of fits with two other seeds) and the Recall@10 of its segment lists, with the per-user gap to the most
  useful K and its standard error (the NDCG@10 is kept for the chart);
- micro: K on a geometric grid on the taste embedding, each with every personal weight of the grid
  (tasks/segment/micro.py), scored by the NDCG@10 of the ready per-user lists they make.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.cluster.choose_k import silhouette
from tasks.cluster.registry import make_clusterer, sweep_family
from tasks.evaluate.holdout import split_events
from tasks.evaluate.metrics import agreement, list_metrics, paired_gaps, segment_user_lists, user_recalls
from tasks.features.interactions import Interactions, interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.segment.evaluate import blended_usefulness_by_weight
from tasks.segment.micro import PERSONAL_WEIGHTS, fit_micro, fit_taste
from tasks.segment.segmenter import fit_embedder, fit_features
from tasks.segment.settings import SegmentSettings

SWEEP_SAMPLE = 5_000
MICRO_SAMPLE = 20_000
MICRO_GRID = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
MIN_USERS_PER_MICRO = 8
MICRO_EVAL_USERS = 5_000
STABILITY_CANDIDATES = 0.15  # K whose silhouette is within 15% of the best get a stability score


@dataclass(frozen=True)
class Sweep:
    people: list[dict]
    micro: list[dict]


def sweep_k(events: pa.Table, items: pa.Table, settings: SegmentSettings, people: bool = True) -> Sweep:
    """Both sweeps on one inner split of `events` (the micro sweep only when settings.micro_k is auto)."""
    inner = split_events(events, settings.seed)
    _, features = fit_features(inner.train, items, settings)
    train = interaction_matrix(features.interactions, users=features.users)
    rng = np.random.default_rng(settings.seed)
    people_rows = []
    if people:
        _, embedding = fit_embedder(features, settings)
        sample = np.sort(
            rng.choice(
                len(embedding.user_ids), size=min(SWEEP_SAMPLE, len(embedding.user_ids)), replace=False
            )
        )
        vectors, users = embedding.vectors[sample], embedding.user_ids[sample]
        n_distinct = len(np.unique(vectors, axis=0))  # more segments than distinct users cannot be told apart
        fits, recalls = {}, {}
        for k in range(settings.k_min, max(settings.k_min, min(settings.k_max, n_distinct - 1)) + 1):
            fits[k] = make_clusterer(sweep_family(settings.clusterer), settings.seed).fit(vectors, k)
            lists = segment_user_lists(train, inner.heldout, users, fits[k].labels_)
            useful = list_metrics(train, inner.heldout, lists, ks=(10,))
            recalls[k] = user_recalls(train, inner.heldout, lists)
            people_rows.append(
                {
                    "k": k,
                    "silhouette": silhouette(vectors, fits[k].labels_, settings.seed),
                    "usefulness": useful["ndcg@10"],
                    "recall@10": useful["recall@10"],
                }
            )
        if inner.heldout:
            for row, (gap, error) in zip(people_rows, paired_gaps(recalls).values(), strict=True):
                row |= {"recall_gap": gap, "recall_gap_se": error}
        # Stability costs two more fits per K: measured only where the silhouette makes K a candidate.
        best = max(row["silhouette"] for row in people_rows)
        for row in people_rows:
            if row["silhouette"] >= best - STABILITY_CANDIDATES * abs(best):
                refits = [
                    make_clusterer(sweep_family(settings.clusterer), settings.seed + i).fit(vectors, row["k"])
                    for i in (1, 2)
                ]
                row["stability"] = float(
                    np.mean([agreement(fits[row["k"]].labels_, f.labels_)["ari"] for f in refits])
                )
    micro_rows = []
    if settings.micro_k == "auto" or settings.personal_weight == "auto":
        micro_rows = _sweep_micro(features, train, inner.heldout, settings, rng)
    return Sweep(people_rows, micro_rows)


def _sweep_micro(
    features: UserFeatures, train: Interactions, heldout: dict[str, set[str]], settings: SegmentSettings,
    rng: np.random.Generator,
) -> list[dict]:  # fmt: skip
    """Rows {k, personal_weight, usefulness, recall@10}: every K of the grid (or the K given) with every
    personal weight (or the one given), scored on at most MICRO_EVAL_USERS held-out users."""
    taste, taste_embedding = fit_taste(features, settings.seed)
    n_users = len(taste_embedding.user_ids)
    if settings.micro_k == "auto":
        grid = [k for k in MICRO_GRID if k * MIN_USERS_PER_MICRO <= min(n_users, MICRO_SAMPLE)] or [
            MICRO_GRID[0]
        ]
    else:
        grid = [int(settings.micro_k)]
    weights = PERSONAL_WEIGHTS if settings.personal_weight == "auto" else (float(settings.personal_weight),)
    if len(heldout) > MICRO_EVAL_USERS:
        users = sorted(heldout)
        heldout = {
            users[i]: heldout[users[i]]
            for i in np.sort(rng.choice(len(users), MICRO_EVAL_USERS, replace=False))
        }
    rows = []
    for k in grid:
        clusterer = make_clusterer("kmeans", settings.seed).fit(_sample(taste_embedding.vectors, rng), k)
        micro = fit_micro(taste, taste_embedding, clusterer, settings.n_memberships, train)
        by_weight = blended_usefulness_by_weight(train, heldout, taste_embedding, micro, weights)
        rows += [
            {
                "k": k,
                "personal_weight": weight,
                "usefulness": useful["ndcg@10"],
                "recall@10": useful["recall@10"],
            }
            for weight, useful in zip(weights, by_weight, strict=True)
        ]
    return rows


def _sample(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(vectors) <= MICRO_SAMPLE:
        return vectors
    return vectors[np.sort(rng.choice(len(vectors), size=MICRO_SAMPLE, replace=False))]
