"""Drift between two runs with a known shift: segments matched across renumbering, the PSI of their sizes,
the share of users who changed segment, and how far the centroids moved."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.evaluate.drift import match_segments, measure_drift, size_psi

USERS = [f"u{i:03d}" for i in range(200)]
# The previous run: u000..u099 in segment 0, u100..u199 in segment 1.
PREVIOUS = {u: 0 if i < 100 else 1 for i, u in enumerate(USERS)}


def test_the_same_segments_renumbered_are_no_drift():
    current = {u: 1 - s for u, s in PREVIOUS.items()}  # ids swapped, members kept
    drift = measure_drift(PREVIOUS, current)
    assert drift.matches == {0: 1, 1: 0}
    assert drift.size_psi == pytest.approx(0.0) and drift.changed_share == 0.0
    assert drift.n_common_users == 200 and drift.warnings() == []


def test_a_known_shift_gives_the_known_psi_and_changed_share():
    # 20 of segment 0's users move to segment 1, and the ids are swapped: shares 0.5/0.5 become 0.4/0.6.
    current = {u: (1 - s) if i >= 20 else 0 for i, (u, s) in enumerate(PREVIOUS.items())}
    drift = measure_drift(PREVIOUS, current)
    assert drift.matches == {1: 0, 0: 1}
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.6 - 0.5) * math.log(0.6 / 0.5)
    assert drift.size_psi == pytest.approx(expected)  # 0.0405
    assert drift.changed_share == pytest.approx(20 / 200)


def test_a_new_segment_is_a_bin_of_its_own_and_a_large_shift_warns():
    current = {u: 2 if i % 2 else PREVIOUS[u] for i, u in enumerate(USERS)}  # half the users in a new segment
    drift = measure_drift(PREVIOUS, current)
    assert drift.changed_share == pytest.approx(0.5)
    # bins: previous 0 (0.5 -> 0.25), previous 1 (0.5 -> 0.25), new (1e-4 -> 0.5)
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert drift.size_psi == pytest.approx(expected, rel=1e-6)
    assert drift.warnings() == [
        f"segment sizes shifted: PSI {expected:.3f} > 0.25",
        "50.0% of users changed segment since the previous run (> 30%)",
    ]


def test_centroids_that_keep_their_members_do_not_move_and_moved_members_move_them():
    rng = np.random.default_rng(0)
    vectors = np.vstack([rng.normal([0, 0], 1, (100, 2)), rng.normal([10, 0], 1, (100, 2))])
    same = measure_drift(PREVIOUS, PREVIOUS, USERS, vectors)
    assert same.centroid_shift == pytest.approx(0.0) and same.max_centroid_shift == pytest.approx(0.0)
    # Segment 1 now also holds 50 of segment 0's users: its centroid moves toward segment 0 by ~3.3 units.
    current = {u: 1 if i >= 50 else 0 for i, u in enumerate(USERS)}
    moved = measure_drift(PREVIOUS, current, USERS, vectors)
    assert moved.matches == {0: 0, 1: 1}
    assert 0.5 < moved.max_centroid_shift < 1.5 and moved.centroid_shift < moved.max_centroid_shift
    assert (
        measure_drift(PREVIOUS, current).centroid_shift != measure_drift(PREVIOUS, current).centroid_shift
    )  # nan


def test_noise_matches_only_noise_and_an_empty_run_is_no_match():
    previous = {"a": 0, "b": -1}
    current = {"a": 3, "b": -1}
    assert match_segments(previous, current) == {3: 0, -1: -1}
    assert match_segments({"b": -1}, current) == {-1: -1}
    assert match_segments({}, current) == {}
    assert size_psi({0: 5}, {0: 5}, {0: 0}) == pytest.approx(0.0)
