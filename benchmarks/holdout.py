"""The holdout's segment lists on a large catalogue: `segment_user_lists` (each segment's list ranked once,
every member takes their first k unseen) against the plain way, one selection over the catalogue per
held-out user (`top_unseen` on the user's segment row), on the same lists.

    .venv/bin/python benchmarks/holdout.py [--users 40000] [--items 100000] [--segments 20] [--sample 2000]

The data: users with a long-tailed number of items (median ~10) drawn from a Zipf-like catalogue, random
segment labels (the cost does not depend on how the segments were found). The plain way is timed on
`--sample` held-out users and given per user, next to segflow's per user over all of them; both lists are
compared on the sample (they must be the same). Prints both, the ratio, and the figures of the lists.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.evaluate.metrics import (  # noqa: E402
    global_item_scores,
    list_metrics,
    segment_item_scores,
    segment_user_lists,
    top_unseen,
)
from tasks.features.interactions import Interactions  # noqa: E402


def long_tail(n_users: int, n_items: int, seed: int) -> tuple[Interactions, dict[str, set[str]]]:
    """A binary users x items matrix with a Zipf-like item popularity, and each user's held-out items (20%
    of their items, at least 1, for users with >= 5)."""
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    sizes = np.minimum(np.round(rng.lognormal(2.3, 0.9, n_users)).astype(int) + 1, n_items // 2)
    draws = np.split(rng.choice(n_items, size=int(sizes.sum()), p=popularity), np.cumsum(sizes)[:-1])
    rows, columns, heldout = [], [], {}
    users = np.array([f"u{i:07d}" for i in range(n_users)], dtype=object)
    items = np.array([f"i{i:07d}" for i in range(n_items)], dtype=object)
    for user, drawn in enumerate(draws):
        chosen = np.unique(drawn)
        held = rng.choice(chosen, size=max(1, len(chosen) // 5), replace=False) if len(chosen) >= 5 else []
        kept = np.setdiff1d(chosen, held)
        rows += [user] * len(kept)
        columns += kept.tolist()
        if len(held):
            heldout[users[user]] = {items[i] for i in held}
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(n_users, n_items))
    return Interactions(users, items, matrix, matrix.copy()), heldout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--sample", type=int, default=2_000, help="held-out users the plain way is timed on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, heldout = long_tail(args.users, args.items, args.seed)
    labels = np.random.default_rng(args.seed + 1).integers(0, args.segments, args.users)
    print(
        f"{args.users:,} users x {args.items:,} items, {train.matrix.nnz:,} interactions, "
        f"{len(heldout):,} held-out users, {args.segments} segments"
    )

    start = time.perf_counter()
    lists = segment_user_lists(train, heldout, train.users, labels)
    segflow_s = time.perf_counter() - start
    figures = list_metrics(train, heldout, lists, ks=(10,))

    rng = np.random.default_rng(args.seed + 2)
    held_users = sorted(heldout)
    sample = [held_users[i] for i in rng.choice(len(held_users), min(args.sample, len(held_users)), False)]
    start = time.perf_counter()
    scores = segment_item_scores(train, labels)
    tie_break = global_item_scores(train)
    row = {u: i for i, u in enumerate(train.users)}
    plain = {
        user: top_unseen(scores[labels[row[user]]], train.matrix[row[user]].indices, 20, tie_break)
        for user in sample
    }
    plain_s = time.perf_counter() - start
    differing = sum(not np.array_equal(plain[u], lists[u]) for u in sample)

    per_user = segflow_s / len(heldout) * 1e3
    plain_per_user = plain_s / len(sample) * 1e3
    print(f"segflow: {segflow_s:.2f} s for {len(heldout):,} users ({per_user:.3f} ms a user)")
    print(f"plain:   {plain_s:.2f} s for {len(sample):,} users ({plain_per_user:.3f} ms a user)")
    print(f"ratio segflow / plain, per user: {per_user / plain_per_user:.3f}")
    print(f"lists that differ on the sample: {differing} of {len(sample):,}")
    print(f"Recall@10 {figures['recall@10']:.4f}, NDCG@10 {figures['ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
