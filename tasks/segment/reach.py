"""The segments' reach: how far from a segment's centre a user can be for the segment to describe them, and
where a user beyond it is placed instead.

A segment is a region of the space users are embedded in (how they shop and what they like). A user with a
handful of events lies far outside every one: on Last.fm, listeners with 1 to 4 plays were 25 to 28 from the
nearest centre where the fit's users are at most 9, because their behaviour (1 play, 1 day) is unlike anyone's.
The nearest centre is then an accident of how short their history is: all of them landed in one segment
whatever they listened to, while their own micro-segments and lists followed their taste.

The reach is Tukey's far-out fence of the fit's distances: Q3 + 3 x IQR of every fitted user's distance to
their own segment's centre. A user beyond it is placed by taste when they are far for how little they did
(fewer than half as many events as the median user of their nearest segment) or further from it than any
fitted user was from theirs (a newcomer measured on a history unlike any the segments were fitted on): in
the segment whose users' items are nearest to theirs (cosine between the user's taste vector, the svd the
micro-segments live in, and the mean taste vector of each segment's fitted users). Other users beyond it (a
fitted heavy user unlike the rest, a user with no item the fit knows) keep the nearest centre, marked `far`.
`placed_by` says which, for every user: `centre`, `taste`, `far`, or `none` (segment -1, HDBSCAN's noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

REACH_IQRS = 3.0  # Tukey's far-out fence: Q3 + 3 x IQR

CENTRE, TASTE, FAR, NONE = "centre", "taste", "far", "none"
PLACEMENTS = (CENTRE, TASTE, FAR, NONE)


@dataclass(frozen=True)
class Reach:
    """The fitted reach: the distance limit, each segment's median events per user, and each segment's taste
    (unit rows; zero for a segment whose users have no taste, which no user is then placed in by taste)."""

    limit: float
    median_events: np.ndarray  # (n_segments,)
    taste_centroids: np.ndarray  # (n_segments, taste dimensions)
    farthest: float = np.inf  # the largest distance of a fitted user to their segment's centre

    @classmethod
    def fit(
        cls,
        labels: np.ndarray,
        distances: np.ndarray,
        n_events: np.ndarray,
        taste: np.ndarray,
        n_segments: int,
    ) -> Reach:
        """From the fit's users: their segments (-1: none), distances to their segment's centre, events and
        taste vectors (rows in the same order)."""
        from sklearn.preprocessing import normalize  # scikit-learn: only when segments are fitted

        inside = labels >= 0
        if not inside.any() or n_segments == 0:  # no segment (HDBSCAN found none): nobody is placed
            return cls(np.inf, np.zeros(0), np.zeros((0, taste.shape[1])), np.inf)
        q1, q3 = np.quantile(distances[inside], [0.25, 0.75])
        medians = np.array(
            [np.median(n_events[labels == s]) if (labels == s).any() else 0.0 for s in range(n_segments)]
        )
        centroids = np.zeros((n_segments, taste.shape[1]))
        np.add.at(centroids, labels[inside], taste[inside].astype(np.float64))
        limit = float(q3 + REACH_IQRS * (q3 - q1))
        return cls(limit, medians, normalize(centroids), float(distances[inside].max()))

    def place(
        self,
        vectors: np.ndarray,
        centroids: np.ndarray,
        labels: np.ndarray,
        distances: np.ndarray,
        n_events: np.ndarray,
        taste: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest-centre `labels` and `distances` (of `vectors`, to `centroids`) with the light users beyond
        the reach placed by `taste` (rows in the same order as `n_events`): new labels, distances to the new
        segments' centres, and `placed_by`. Inputs are not changed."""
        beyond = (labels >= 0) & (distances > self.limit)
        if not len(self.median_events):
            return labels.copy(), distances.copy(), unplaced(labels)
        light = n_events < self.median_events[np.maximum(labels, 0)] / 2
        unlike = light | (distances > self.farthest)
        by_taste = beyond & unlike & ~blank_rows(taste) & (np.abs(self.taste_centroids).sum() > 0)
        labels, distances = labels.copy(), distances.copy()
        if by_taste.any():
            placed = (taste[by_taste].astype(np.float64) @ self.taste_centroids.T).argmax(axis=1)
            labels[by_taste] = placed
            gaps = vectors[by_taste].astype(np.float64) - centroids[placed].astype(np.float64)
            distances[by_taste] = np.sqrt((gaps**2).sum(axis=1))
        placed_by = np.where(by_taste, TASTE, np.where(beyond, FAR, CENTRE))
        return labels, distances, np.where(labels < 0, NONE, placed_by)


def blank_rows(vectors: np.ndarray) -> np.ndarray:
    """Users without a taste vector: none of their items is one the fit knows."""
    return ~np.abs(vectors).any(axis=1)


def unplaced(labels: np.ndarray) -> np.ndarray:
    """`placed_by` without a reach: every user by the nearest centre (or none)."""
    return np.where(labels < 0, NONE, CENTRE)


def reach_metrics(reach: Reach, assignments: pl.DataFrame) -> dict[str, float]:
    """The reach and how many users of the run were placed beyond it, for the run's metrics."""
    counts = assignments["placed_by"].value_counts()
    placed = dict(zip(counts["placed_by"], counts["count"], strict=True))
    return {
        "reach": reach.limit,
        "placed_by_taste": float(placed.get(TASTE, 0)),
        "placed_far": float(placed.get(FAR, 0)),
    }


def reach_notes(metrics: dict[str, float], n_users: int) -> list[str]:
    """For the summary, when some of the run's `n_users` lie beyond the segments' reach (`reach_metrics`)."""
    n_taste, n_far = int(metrics["placed_by_taste"]), int(metrics["placed_far"])
    if not n_taste + n_far:
        return []
    return [
        f"{n_taste + n_far:,} of {n_users:,} users {'lies' if n_taste + n_far == 1 else 'lie'} beyond "
        f"the segments' reach (further than {metrics['reach']:.2f} from every centre: Q3 + 3 IQR of the users' "
        f"distances): {beyond_parts(n_taste, n_far)}"
    ]


def beyond_parts(n_taste: int, n_far: int) -> str:
    """How the users beyond the reach were placed, leaving out a way none was."""
    parts = [
        (n_taste, f"{n_taste:,} placed by taste (user_segments.placed_by = 'taste')"),
        (n_far, f"{n_far:,} kept at the nearest centre, which describes them loosely ('far')"),
    ]
    return "; ".join(text for n, text in parts if n)


def placement_note(placed_by: str | None, distance: float) -> str | None:
    """What `segflow user` says of a user placed otherwise than by the nearest centre."""
    if placed_by == TASTE:
        return (
            f"placed by taste: their history (few events, or unlike any the segments were fitted on) puts them "
            f"beyond the segments' reach (distance {distance:.2f} from this segment's centre), so they are in the "
            "segment whose users' items are nearest to theirs; its other traits (activity, time of day) may not "
            "be theirs"
        )
    if placed_by == FAR:
        return (
            f"beyond the segments' reach (distance {distance:.2f}): the nearest segment, which describes them "
            "loosely"
        )
    return None


def scored_placement_note(by_placement: dict[str, int]) -> str | None:
    """What `segflow score` says when some scored users lie beyond the segments' reach."""
    n_taste, n_far = by_placement.get(TASTE, 0), by_placement.get(FAR, 0)
    if not n_taste + n_far:
        return None
    n = n_taste + n_far
    return f"{n:,} of them {'lies' if n == 1 else 'lie'} beyond the segments' reach: {beyond_parts(n_taste, n_far)}"
