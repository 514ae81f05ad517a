"""Drift between two published runs: how far the segments moved. Pure functions of two assignments (and, for
centroids, the current run's vectors), so a flow can call them between `assign` and `track`.

A run's segment ids are its own, so segments are first matched across the runs by the users they share
(the assignment that maximises shared users, Hungarian). Then:

- `size_psi`: the population stability index of segment sizes, sum over segments of (q - p) ln(q / p), with p
  the previous run's shares and q the current run's (a segment without a match is a bin of its own; empty
  bins count as `EPSILON`). Below 0.1 is usually read as stable, above 0.25 as a large shift.
- `changed_share`: among users in both runs, the share whose current segment is not the match of their
  previous one.
- `centroid_shift`: for each matched pair, the distance between the centroid of the previous segment's
  members and that of the current segment's, both in the current run's vectors (embedders are refitted per
  run, so the previous run's own centroids live in another space), divided by the current segment's
  root-mean-square radius: 0 when the segment kept its members, about 1 when it moved by its own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

EPSILON = 1e-4  # the share an empty bin counts as, so the PSI stays finite


@dataclass(frozen=True)
class Drift:
    """How far the current run's segments are from the previous run's."""

    size_psi: float
    changed_share: float
    centroid_shift: float  # mean over matched segments; nan without vectors
    max_centroid_shift: float
    n_common_users: int
    matches: dict[int, int]  # current segment -> previous segment

    def warnings(self, max_psi: float = 0.25, max_changed_share: float = 0.3) -> list[str]:
        """One line per measure past its threshold."""
        lines = []
        if self.size_psi > max_psi:
            lines.append(f"segment sizes shifted: PSI {self.size_psi:.3f} > {max_psi}")
        if self.changed_share > max_changed_share:
            lines.append(
                f"{self.changed_share:.1%} of users changed segment since the previous run (> {max_changed_share:.0%})"
            )
        return lines

    def metrics(self) -> dict[str, float]:
        """The measures as run metrics (e.g. for MLflow), namespaced `drift/`."""
        return {
            "drift/size_psi": self.size_psi,
            "drift/changed_share": self.changed_share,
            "drift/centroid_shift": self.centroid_shift,
            "drift/max_centroid_shift": self.max_centroid_shift,
            "drift/n_common_users": float(self.n_common_users),
        }


def match_segments(previous: Mapping[str, int], current: Mapping[str, int]) -> dict[int, int]:
    """current segment -> previous segment, maximising the users each matched pair shares; segment -1 (noise)
    matches only -1."""
    common = [u for u in current if u in previous and current[u] >= 0 and previous[u] >= 0]
    cur_ids = sorted({current[u] for u in common})
    prev_ids = sorted({previous[u] for u in common})
    noise = {-1: -1} if -1 in current.values() and -1 in previous.values() else {}
    if not cur_ids or not prev_ids:
        return noise
    cur_index = {s: i for i, s in enumerate(cur_ids)}
    prev_index = {s: i for i, s in enumerate(prev_ids)}
    shared = np.zeros((len(cur_ids), len(prev_ids)))
    for u in common:
        shared[cur_index[current[u]], prev_index[previous[u]]] += 1
    rows, cols = linear_sum_assignment(-shared)
    matches = {cur_ids[r]: prev_ids[c] for r, c in zip(rows, cols, strict=True) if shared[r, c] > 0}
    return matches | noise


def sizes(assignment: Mapping[str, int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for segment in assignment.values():
        counts[segment] = counts.get(segment, 0) + 1
    return counts


def size_psi(
    previous_sizes: Mapping[int, int], current_sizes: Mapping[int, int], matches: Mapping[int, int]
) -> float:
    """PSI of segment shares, current segments mapped onto their matches in the previous run."""
    bins: dict[tuple[str, int], list[float]] = {}
    for segment, n in previous_sizes.items():
        bins.setdefault(("p", segment), [0.0, 0.0])[0] = n
    for segment, n in current_sizes.items():
        key = ("p", matches[segment]) if segment in matches else ("c", segment)
        bins.setdefault(key, [0.0, 0.0])[1] += n
    counts = np.array(list(bins.values()))
    shares = np.maximum(counts / np.maximum(counts.sum(axis=0), 1), EPSILON)
    p, q = shares[:, 0], shares[:, 1]
    return float(np.sum((q - p) * np.log(q / p)))


def changed_share(
    previous: Mapping[str, int], current: Mapping[str, int], matches: Mapping[int, int]
) -> float:
    """Among users in both runs, the share whose current segment is not the match of their previous one."""
    common = [u for u in current if u in previous]
    if not common:
        return 0.0
    return sum(matches.get(current[u]) != previous[u] for u in common) / len(common)


def centroid_shift(
    user_ids: Sequence[str],
    vectors: np.ndarray,
    previous: Mapping[str, int],
    current: Mapping[str, int],
    matches: Mapping[int, int],
) -> list[float]:
    """Per matched segment (noise excluded): the distance between the previous and current members'
    centroids in `vectors` (the current run's), over the current segment's RMS radius."""
    row = {u: i for i, u in enumerate(user_ids)}
    shifts = []
    for cur, prev in sorted(matches.items()):
        if cur < 0:
            continue
        now = [row[u] for u, s in current.items() if s == cur and u in row]
        before = [row[u] for u, s in previous.items() if s == prev and u in row]
        if not now or not before:
            continue
        centre = vectors[now].mean(axis=0)
        radius = float(np.sqrt(np.mean(np.sum((vectors[now] - centre) ** 2, axis=1))))
        distance = float(np.linalg.norm(vectors[before].mean(axis=0) - centre))
        shifts.append(distance / radius if radius > 0 else (0.0 if distance == 0 else float("inf")))
    return shifts


def measure_drift(
    previous: Mapping[str, int],
    current: Mapping[str, int],
    user_ids: Sequence[str] | None = None,
    vectors: np.ndarray | None = None,
) -> Drift:
    """Every drift measure between two assignments (user -> segment); centroid shifts when the current run's
    vectors (rows in `user_ids` order) are given."""
    matches = match_segments(previous, current)
    shifts = (
        centroid_shift(user_ids, vectors, previous, current, matches)
        if user_ids is not None and vectors is not None
        else []
    )
    return Drift(
        size_psi=size_psi(sizes(previous), sizes(current), matches),
        changed_share=changed_share(previous, current, matches),
        centroid_shift=float(np.mean(shifts)) if shifts else float("nan"),
        max_centroid_shift=float(np.max(shifts)) if shifts else float("nan"),
        n_common_users=sum(u in previous for u in current),
        matches=matches,
    )
