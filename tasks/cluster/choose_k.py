"""How many segments: one rule per level.

People (`choose_k`, for `--k auto`): K is the larger of two floors, so segments are neither merged where the
data has distinct groups nor too coarse to be of use:
- structure: the sweep scores each K on the training data by silhouette (are the groups distinct?) and
  stability (mean ARI between fits with different seeds: would another run find the same groups?; measured
  for the K whose silhouette is within 15% of the best). Among the K with stability >= 0.8, the smallest K
  whose silhouette is within 2% of the best of them. This keeps apart segments that share a taste but shop
  differently, which usefulness alone would merge (their lists are the same).
- usefulness: the smallest K whose segment lists' Recall@10 on the inner validation split is within one
  standard error of the best K's (the paired per-user difference; the one-standard-error rule of model
  selection). Silhouette favours K = 2 when groups overlap (a titles-only shop: every K above 2 scores lower,
  while 9 segments recall 60% more than 2); this floor stops that.

Recommenders (`choose_micro`): micro-segments are there to predict, so their K, with the personal weight of
the per-user lists made from them (tasks/segment/micro.py), is the pair whose per-user lists are the most
useful (NDCG@10) on an inner validation split; ties within 1% go to the smaller K, then the smaller weight
(the lists closer to the micro-segments' own).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

MIN_STABILITY = 0.8
SILHOUETTE_TOLERANCE = 0.02
USEFULNESS_TOLERANCE = 0.01


def choose_k(sweep: list[dict]) -> int:
    """The people rule above over sweep rows {k, silhouette, stability, recall_gap, recall_gap_se}; the gap
    to the most useful K and its standard error are absent without held-out users (structure alone)."""
    by_structure, by_usefulness = k_floors(sweep)
    return max(by_structure, by_usefulness or by_structure)


def k_floors(sweep: list[dict]) -> tuple[int, int | None]:
    """The two floors of the people rule: K by structure, and K by usefulness (None without held-out users)."""
    stable = [row for row in sweep if row.get("stability", 0) >= MIN_STABILITY] or sweep
    best = max(row["silhouette"] for row in stable)
    good_enough = [row for row in stable if row["silhouette"] >= best - SILHOUETTE_TOLERANCE * abs(best)]
    useful = [row["k"] for row in sweep if "recall_gap" in row and row["recall_gap"] <= row["recall_gap_se"]]
    return int(min(row["k"] for row in good_enough)), (int(min(useful)) if useful else None)


def k_note(sweep: list[dict]) -> str | None:
    """For the summary, when usefulness and not structure set K: the two floors, so a K whose silhouette or
    stability is below the structure rule's reads as chosen, not as a mistake."""
    by_structure, by_usefulness = k_floors(sweep)
    if by_usefulness is None or by_usefulness <= by_structure:
        return None
    return (
        f"K = {by_usefulness} is the usefulness floor: the fewest segments whose lists recall as well as the "
        f"best K's on an inner split (within one standard error); structure alone (silhouette, stability) "
        f"gave K = {by_structure}, whose lists recall less"
    )


def choose_micro(sweep: list[dict]) -> tuple[int, float]:
    """The recommender rule above over sweep rows {k, personal_weight, usefulness}: (K, personal weight)."""
    best = max(row["usefulness"] for row in sweep)
    good_enough = [row for row in sweep if row["usefulness"] >= (1 - USEFULNESS_TOLERANCE) * best]
    k, weight = min((row["k"], row["personal_weight"]) for row in good_enough)
    return int(k), float(weight)


def silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 3000) -> float:
    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(vectors, labels, sample_size=min(sample, len(vectors)), random_state=seed))
