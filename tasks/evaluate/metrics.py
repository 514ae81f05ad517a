"""Metrics: intrinsic cluster metrics, stability, and how well segment top lists predict held-out items.

The recommendation protocol: users with >= 5 distinct items; the last 20% (at least 1) of their distinct
items by first interaction are held out; segments are fit on the rest; each user is recommended the top items
of their segment's list they have not seen; Recall@k and NDCG@k against the held-out items, next to global
popularity measured the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.preprocessing import normalize

from tasks.features.interactions import Interactions


def member_shares(train: Interactions, labels: np.ndarray, n_segments: int) -> sp.csr_matrix:
    """(n_segments, n_items), sparse: the share of each segment's members who interacted with each item (an
    interaction of positive weight: `Interactions.touched`, as the published lists count). `labels` are per
    row of `train.users`; -1 (noise, none) counts in no segment."""
    valid = labels >= 0
    members = sp.csr_matrix(
        (np.ones(int(valid.sum())), (labels[valid], np.flatnonzero(valid))), shape=(n_segments, len(labels))
    )
    sizes = np.maximum(np.asarray(members.sum(axis=1)).ravel(), 1)
    return (sp.diags(1 / sizes) @ (members @ train.touched)).tocsr()


def segment_item_scores(train: Interactions, labels: np.ndarray) -> np.ndarray:
    """`member_shares` of every segment in `labels`, dense (users labelled -1 get the global list, in
    `segment_user_lists`)."""
    n_segments = int(labels.max()) + 1 if len(labels) else 0
    return member_shares(train, labels, n_segments).toarray()


def global_item_scores(train: Interactions) -> np.ndarray:
    """Each item's share of all users (who touched it with a positive weight)."""
    return np.asarray(train.touched.mean(axis=0)).ravel()


def best_first(scores: np.ndarray, tie_break: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the `depth` best items with a finite score, best first: by score, then `tie_break`, then
    the lower index (one order, whatever the ties at the cut)."""
    adjusted = scores + 1e-9 * tie_break
    adjusted[np.isnan(adjusted)] = -np.inf  # no score is the worst score (a NaN cut would keep no item)
    depth = min(depth, len(adjusted))
    if depth <= 0:
        return np.zeros(0, dtype=np.int64)
    cut = adjusted[np.argpartition(-adjusted, depth - 1)[depth - 1]]
    candidates = np.flatnonzero(adjusted >= cut)  # every item tied at the cut, so the lower indices win
    order = candidates[np.lexsort((candidates, -adjusted[candidates]))][:depth]
    return order[np.isfinite(adjusted[order])]


def first_unseen(ranking: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """The first k items of a `best_first` ranking (at least k + len(seen) deep) that are not `seen`: at most
    len(seen) of its first k + len(seen) are seen."""
    head = ranking[: k + len(seen)]
    return head[~np.isin(head, seen)][:k]


def top_unseen(scores: np.ndarray, seen: np.ndarray, k: int, tie_break: np.ndarray) -> np.ndarray:
    """Indices of the k best items by score (ties by `tie_break`, then the lower index), skipping `seen`."""
    return first_unseen(best_first(scores, tie_break, k + len(seen)), seen, k)


def ranking_metrics(
    train: Interactions,
    heldout: dict[str, set[str]],
    score_rows: np.ndarray,
    row_of_user: dict[str, int],
    ks: tuple[int, ...] = (10, 20),
) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over held-out users, recommending each user the top unseen items of their row."""
    return list_metrics(train, heldout, ranked_lists(train, heldout, score_rows, row_of_user, max(ks)), ks)


def ranked_lists(
    train: Interactions, heldout: dict[str, set[str]], score_rows: np.ndarray, row_of_user: dict[str, int],
    k: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Each held-out user's top `k` unseen items (indices of `train.items`) by the scores of their row, as
    `top_unseen` gives them. A row is ranked once for all its users (a segment's list is shared by thousands:
    one selection over the catalogue per user cost minutes with 100,000 items); each user takes from it."""
    user_index = {u: i for i, u in enumerate(train.users)}
    tie_break = global_item_scores(train)
    indptr, indices = train.matrix.indptr, train.matrix.indices
    seen_of = {
        user: indices[indptr[user_index[user]] : indptr[user_index[user] + 1]]
        for user in heldout
        if user in user_index and user in row_of_user
    }
    users_of_row: dict[int, list[str]] = {}
    for user in seen_of:
        users_of_row.setdefault(row_of_user[user], []).append(user)
    recommended = {}
    for row, users in users_of_row.items():
        ranking = best_first(score_rows[row], tie_break, k + max(len(seen_of[u]) for u in users))
        for user in users:
            recommended[user] = first_unseen(ranking, seen_of[user], k)
    return {user: recommended[user] for user in seen_of}


def user_recalls(
    train: Interactions, heldout: dict[str, set[str]], recommended: dict[str, np.ndarray], k: int = 10
) -> dict[str, float]:
    """Each held-out user's Recall@k: what a mean hides, e.g. for a paired comparison of two lists."""
    item_index = {t: i for i, t in enumerate(train.items)}
    recalls = {}
    for user, items in heldout.items():
        if user in recommended:
            relevant = {item_index[t] for t in items if t in item_index}
            recalls[user] = sum(1 for i in recommended[user][:k] if i in relevant) / len(items)
    return recalls


def paired_gaps(recalls: dict) -> dict:
    """Name -> (mean, standard error) of the per-user Recall@10 difference between the most useful of the
    compared lists (the first, among equals) and that one, over the users the best one scored (a user the
    other missed counts 0). `recalls`: name -> `user_recalls`."""
    best = max(recalls, key=lambda name: np.mean(list(recalls[name].values())) if recalls[name] else 0.0)
    users = sorted(recalls[best])
    reference = np.array([recalls[best][u] for u in users])
    gaps = {}
    for name, by_user in recalls.items():
        gap = reference - np.array([by_user.get(u, 0.0) for u in users])
        error = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else 0.0
        gaps[name] = (float(gap.mean()) if len(gap) else 0.0, float(error))
    return gaps


def list_metrics(
    train: Interactions,
    heldout: dict[str, set[str]],
    recommended: dict[str, np.ndarray],
    ks: tuple[int, ...] = (10, 20),
) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over the held-out users that have a list (`recommended`: user -> ranked item
    indices of `train.items`). Vectorised: one lookup of every (user, listed item) among the held-out pairs."""
    users = [user for user in heldout if user in recommended]
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    if not users:
        return sums | {"n_eval_users": 0}
    item_index = {t: i for i, t in enumerate(train.items)}
    n_items, depth = len(train.items) + 1, max(ks)
    listed = np.full((len(users), depth), -1, dtype=np.int64)
    relevant_keys, n_heldout = [], np.empty(len(users))
    for row, user in enumerate(users):
        items = np.asarray(recommended[user][:depth], dtype=np.int64)
        listed[row, : len(items)] = items
        relevant_keys += [row * n_items + item_index[t] for t in heldout[user] if t in item_index]
        n_heldout[row] = len(heldout[user])
    keys = np.where(listed >= 0, np.arange(len(users))[:, None] * n_items + listed, -1)
    hits = np.isin(keys, np.array(relevant_keys, dtype=np.int64)).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    ideal_cumulative = np.cumsum(discounts)
    for k in ks:
        sums[f"recall@{k}"] = float((hits[:, :k].sum(axis=1) / n_heldout).mean())
        ideal = ideal_cumulative[np.minimum(k, n_heldout).astype(np.int64) - 1]
        sums[f"ndcg@{k}"] = float(((hits[:, :k] * discounts[:k]).sum(axis=1) / ideal).mean())
    return sums | {"n_eval_users": len(users)}


def itemknn_usefulness(
    train: Interactions, heldout: dict[str, set[str]], chunk: int = 2_000
) -> dict[str, float]:
    """The personalised reference: item-item cosine over the binary training matrix; each held-out user gets
    the top unseen items by the summed similarity to what they have seen."""
    columns = normalize(train.matrix.T.tocsr().astype(np.float64))
    similarity = (columns @ columns.T).tocsr()
    similarity.setdiag(0)
    user_index = {u: i for i, u in enumerate(train.users)}
    users = [u for u in heldout if u in user_index]
    tie_break = global_item_scores(train)
    recommended = {}
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        rows = train.matrix[[user_index[u] for u in block]]
        scores = np.asarray((rows @ similarity).todense())
        for i, user in enumerate(block):
            recommended[user] = top_unseen(scores[i], rows[i].indices, 20, tie_break)
    return list_metrics(train, heldout, recommended)


def segment_user_lists(
    train: Interactions, heldout: dict[str, set[str]], user_ids: np.ndarray, labels: np.ndarray, k: int = 20
) -> dict[str, np.ndarray]:
    """Each held-out user's top `k` unseen items from their segment's list (the global list for -1)."""
    positions = train.user_positions(user_ids)
    train_labels = np.full(len(train.users), -1)
    train_labels[positions[positions >= 0]] = labels[positions >= 0]
    scores = segment_item_scores(train, train_labels)
    popularity = global_item_scores(train)
    rows = np.vstack([scores, popularity[None, :]]) if scores.size else popularity[None, :]
    global_row = len(rows) - 1
    row_of_user = {u: (int(s) if s >= 0 else global_row) for u, s in zip(user_ids, labels, strict=True)}
    return ranked_lists(train, heldout, rows, row_of_user, k)


def segment_usefulness(
    train: Interactions, heldout: dict[str, set[str]], user_ids: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Recall / NDCG @10 and @20 of segment top lists, and of global popularity, with the lift."""
    segment = list_metrics(train, heldout, segment_user_lists(train, heldout, user_ids, labels))
    popularity = global_item_scores(train)
    baseline = ranking_metrics(train, heldout, popularity[None, :], dict.fromkeys(user_ids, 0))
    result = {f"segments/{k}": v for k, v in segment.items()}
    result |= {f"popularity/{k}": v for k, v in baseline.items()}
    for k in ("recall@10", "ndcg@10"):
        base = baseline[k]
        result[f"lift/{k}"] = segment[k] / base if base else float("nan")
    return result


def intrinsic_metrics(
    vectors: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 5000
) -> dict[str, float]:
    """Silhouette (sampled), Davies-Bouldin, Calinski-Harabasz, within-cluster variance, mean distance between
    centroids, and size balance (smallest / largest share, entropy). Noise (-1) is left out."""
    mask = labels >= 0
    x, y = vectors[mask], labels[mask]
    segments, sizes = np.unique(y, return_counts=True)
    shares = sizes / sizes.sum() if len(sizes) else np.array([1.0])
    metrics = {
        "n_segments": float(len(segments)),
        "noise_share": float(1 - mask.mean()) if len(mask) else 0.0,
        "smallest_share": float(shares.min()),
        "largest_share": float(shares.max()),
        "size_entropy": float(-(shares * np.log(shares)).sum() / np.log(len(shares)))
        if len(shares) > 1
        else 0.0,
    }
    if len(segments) < 2:
        return metrics
    centroids = np.vstack([x[y == s].mean(axis=0) for s in segments])
    within = np.mean([((x[y == s] - centroids[i]) ** 2).sum(axis=1).mean() for i, s in enumerate(segments)])
    between = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    metrics |= {
        "silhouette": float(silhouette_score(x, y, sample_size=min(sample, len(x)), random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(x, y)),
        "calinski_harabasz": float(calinski_harabasz_score(x, y)),
        "within_variance": float(within),
        "between_centroid_distance": float(between[np.triu_indices(len(segments), 1)].mean()),
    }
    return metrics


def agreement(labels_a: np.ndarray, labels_b: np.ndarray) -> dict[str, float]:
    return {
        "ari": float(adjusted_rand_score(labels_a, labels_b)),
        "nmi": float(normalized_mutual_info_score(labels_a, labels_b)),
    }


def moved_share(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """The share of items whose group in `labels_b` is not the one matched to their group in `labels_a`
    (groups matched one to one so that as many items as possible stay: the Hungarian method)."""
    from scipy.optimize import linear_sum_assignment

    if len(labels_a) == 0:
        return 0.0
    groups_a, rows = np.unique(labels_a, return_inverse=True)
    groups_b, columns = np.unique(labels_b, return_inverse=True)
    table = np.zeros((len(groups_a), len(groups_b)))
    np.add.at(table, (rows, columns), 1)
    matched_rows, matched_columns = linear_sum_assignment(-table)
    return float(1 - table[matched_rows, matched_columns].sum() / len(labels_a))
