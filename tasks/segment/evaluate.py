"""What a fitted segmenter is worth: the usefulness of every published list on the holdout (segment lists,
micro-segment lists, blended per-user lists) next to popularity and ItemKNN, intrinsic quality, stability,
and agreement with planted segments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.cluster.base import Clusterer
from tasks.cluster.choose_k import MIN_STABILITY
from tasks.cluster.registry import make_clusterer
from tasks.embed.base import Embedding, FitOptions
from tasks.evaluate.holdout import EventSplit
from tasks.evaluate.metrics import (
    agreement,
    intrinsic_metrics,
    itemknn_usefulness,
    list_metrics,
    moved_share,
    segment_usefulness,
)
from tasks.features.interactions import Interactions, interaction_matrix
from tasks.features.user_features import UserFeatures
from tasks.segment.micro import MicroSegments

USER_LIST_LENGTH = 20
LISTS = ("segments", "micro", "blended")
ITEMKNN_MAX_ITEMS = 30_000  # item-item similarity is quadratic in items: past this it is not measured


def blended_usefulness(
    train: Interactions, heldout: dict[str, set[str]], taste: Embedding, micro: MicroSegments
) -> dict[str, float]:
    """Recall / NDCG of the ready per-user lists, as published (`MicroSegments.recommend`). Rows of `train` and
    `taste` are the same users in the same order, and its items those of the micro-segments' lists."""
    return blended_usefulness_by_weight(train, heldout, taste, micro, [micro.personal_weight])[0]


def blended_usefulness_by_weight(
    train: Interactions, heldout: dict[str, set[str]], taste: Embedding, micro: MicroSegments,
    personal_weights: Sequence[float],
) -> list[dict[str, float]]:  # fmt: skip
    """`blended_usefulness` at each personal weight, the users' candidates made once."""
    rows = np.array([i for i, u in enumerate(train.users) if u in heldout], dtype=np.int64)
    users = Embedding(taste.name, taste.user_ids[rows], taste.vectors[rows])
    seen = train.matrix[rows]
    candidates = micro.candidates(users, seen) if len(rows) else None
    scores = []
    for weight in personal_weights:
        recommended = micro.with_personal_weight(weight).recommend(users, seen, USER_LIST_LENGTH, candidates)
        by_user = {train.users[r]: items for r, (items, _) in zip(rows, recommended, strict=True)}
        scores.append(list_metrics(train, heldout, by_user))
    return scores


def score_holdout(
    features: UserFeatures,
    embedding: Embedding,
    clusterer: Clusterer,
    micro: MicroSegments,
    taste: Embedding,
    split: EventSplit,
) -> dict[str, float]:
    """The recommendation protocol for every list a run publishes, fit on the training part and scored on the
    held-out items, with popularity and ItemKNN measured the same way. Without users of >= 5 distinct items,
    usefulness is not measured."""
    metrics = {
        "holdout/n_items": float(split.n_heldout_items), "holdout/n_users": float(split.n_users),
        "holdout/k": float(clusterer.k),
    }  # fmt: skip
    if not split.heldout:
        return metrics
    train = interaction_matrix(features.interactions, users=features.users)
    metrics |= segment_usefulness(
        train, split.heldout, embedding.user_ids, clusterer.predict(embedding.vectors)[0]
    )
    micro_labels = micro.clusterer.predict(taste.vectors)[0]
    micro_scores = segment_usefulness(train, split.heldout, taste.user_ids, micro_labels)
    metrics |= {
        k.replace("segments/", "micro/"): v for k, v in micro_scores.items() if k.startswith("segments/")
    }
    metrics |= {f"blended/{k}": v for k, v in blended_usefulness(train, split.heldout, taste, micro).items()}
    if len(train.items) <= ITEMKNN_MAX_ITEMS:
        metrics |= {f"itemknn/{k}": v for k, v in itemknn_usefulness(train, split.heldout).items()}
    for name in ("micro", "blended"):
        for k in ("recall@10", "ndcg@10"):
            baseline = metrics[f"popularity/{k}"]
            metrics[f"lift/{name}/{k}"] = metrics[f"{name}/{k}"] / baseline if baseline else float("nan")
    return metrics


def best_list(metrics: dict[str, float]) -> str | None:
    """The published list to use: the one with the highest Recall@10 on the holdout (None when not measured)."""
    scored = {name: metrics[f"{name}/recall@10"] for name in LISTS if f"{name}/recall@10" in metrics}
    return max(scored, key=scored.get) if scored else None


def describe_segments(
    embedding: Embedding,
    labels: np.ndarray,
    clusterer_name: str,
    k: int,
    seed: int,
    truth: dict[str, int] | None,
    options: FitOptions | None = None,
) -> dict[str, float]:
    """Intrinsic metrics, stability (ARI against a refit with another seed, trained as `options` say) and,
    with planted truth, ARI / NMI (users planted as noise, segment < 0, are left out: no segment should claim
    them)."""
    vectors = embedding.vectors
    metrics = {f"intrinsic/{name}": v for name, v in intrinsic_metrics(vectors, labels, seed).items()}
    refit = make_clusterer(clusterer_name, seed + 1, options).fit(vectors, k)
    refit_labels = refit.predict(vectors)[0]
    metrics["stability/ari"] = agreement(labels, refit_labels)["ari"]
    metrics["stability/moved"] = moved_share(labels, refit_labels)
    if truth:
        known = [i for i, u in enumerate(embedding.user_ids) if truth.get(str(u), -1) >= 0]
        if known:
            planted = np.array([truth[str(embedding.user_ids[i])] for i in known])
            scores = agreement(planted, labels[known])
            metrics |= {"planted/ari": scores["ari"], "planted/nmi": scores["nmi"]}
    metrics["k"] = float(k)
    return metrics


def holdout_k_notes(metrics: dict[str, float]) -> list[str]:
    """For the summary, when the segments scored on the holdout (fit on the training part) are not as many as
    those published (fit on every user): segments under the minimum size merge in one fit and not the other."""
    fit_k, k = metrics.get("holdout/k"), metrics.get("k")
    if fit_k is None or k is None or fit_k == k:
        return []
    return [
        f"the holdout figures are those of the segments fit on the training part, {fit_k:.0f} of them; "
        f"fit on every user, {k:.0f} are published (two fits: each merges its own segments under the minimum "
        "size, or finds its own K)"
    ]


def stability_notes(metrics: dict[str, float]) -> list[str]:
    """For the summary, when a refit with another seed agrees with the segments less than the K rule calls
    stable: a retrain is then likely to move many users (Last.fm's K = 20: ARI 0.64, and a retrain after 15
    new events moved 37.5% of the users, with no line of the summary saying so)."""
    ari, moved = metrics.get("stability/ari"), metrics.get("stability/moved")
    if ari is None or moved is None or ari >= MIN_STABILITY:
        return []
    return [
        f"the segments are less stable than the K rule asks (ARI {ari:.3f} against {MIN_STABILITY}): a refit "
        f"with another seed puts {moved:.0%} of the users in another segment, and a retrain may move as many; "
        "the micro-segments and per-user lists do not depend on the segments"
    ]


class NotUsefulError(ValueError):
    """The lists a run would publish are not more useful than popularity, and the run was asked to require it."""


def usefulness_notes(metrics: dict[str, float], require_lift: bool, published: bool = True) -> list[str]:
    """What the summary says about usefulness: which published list to use (for a run the champion gate keeps
    from publishing, what its list would have recalled), and plainly when no list beats popularity on the
    holdout (a refusal with `require_lift`)."""
    best = best_list(metrics)
    if best is None:
        return ["usefulness was not measured: no user has 5 or more distinct items to hold out"]
    recall, popularity = metrics[f"{best}/recall@10"], metrics["popularity/recall@10"]
    if recall <= popularity:
        message = (
            f"no published list is more useful than popularity on the holdout (best: {best} lists, "
            f"Recall@10 {recall:.4f} vs popularity {popularity:.4f})"
        )
        if require_lift:
            raise NotUsefulError(message + "; nothing was published (--require-lift)")
        return [message + ": recommend the popular items, or add data"]
    names = {"segments": "segment lists", "micro": "micro-segment lists", "blended": "blended per-user lists"}
    table = {"segments": "segment_recommendations", "micro": "micro_segment_recommendations",
             "blended": "user_recommendations"}[best]  # fmt: skip
    figures = f"Recall@10 {recall:.4f}, {recall / popularity:.2f}x popularity on the holdout"
    if not published:
        return [f"this run's {names[best]} ({figures}) are not published: {table} keeps the champion's"]
    return [f"use the {names[best]} ({table}): {figures}"]
