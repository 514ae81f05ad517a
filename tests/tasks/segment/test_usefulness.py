"""The usefulness gate: the summary says which published list to use, and plainly when none beats popularity."""

from __future__ import annotations

import pytest

from tasks.segment.evaluate import NotUsefulError, best_list, usefulness_notes

MEASURED = {
    "segments/recall@10": 0.05, "micro/recall@10": 0.055, "blended/recall@10": 0.06, "popularity/recall@10": 0.04,
}  # fmt: skip


def test_the_summary_names_the_most_useful_published_list():
    assert best_list(MEASURED) == "blended"
    assert usefulness_notes(MEASURED, require_lift=True) == [
        "use the blended per-user lists (user_recommendations): Recall@10 0.0600, 1.50x popularity on the holdout"
    ]

    # A run the champion gate keeps from publishing: its lists are not the ones in the table.
    assert usefulness_notes(MEASURED, require_lift=False, published=False) == [
        "this run's blended per-user lists (Recall@10 0.0600, 1.50x popularity on the holdout) are not "
        "published: user_recommendations keeps the champion's"
    ]


def test_lists_no_better_than_popularity_are_said_plainly_and_refused_with_require_lift():
    useless = {name: 0.03 for name in MEASURED} | {"popularity/recall@10": 0.04}
    notes = usefulness_notes(useless, require_lift=False)
    assert notes[0].startswith("no published list is more useful than popularity on the holdout (best: ")
    with pytest.raises(NotUsefulError, match=r"nothing was published \(--require-lift\)"):
        usefulness_notes(useless, require_lift=True)


def test_without_held_out_users_usefulness_is_not_measured():
    assert best_list({}) is None
    assert usefulness_notes({}, require_lift=True) == [
        "usefulness was not measured: no user has 5 or more distinct items to hold out"
    ]
