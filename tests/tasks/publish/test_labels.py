"""Segment labels name what sets a segment apart: taste, activity, funnel, ratings and time of day."""

from __future__ import annotations

from tasks.publish.profile import clock_notes, segment_label

DAYPARTS = ("share_night", "share_early", "share_morning", "share_afternoon", "share_evening", "share_late")


def stats(**values) -> dict:
    base = {"median_events": 10, "purchase_share": 0.1, "mean_rating": None, "share_weekend": 0.28}
    return base | dict.fromkeys(DAYPARTS, 1 / 6) | values


def test_a_label_names_distinctive_categories_activity_funnel_and_time():
    segment = stats(median_events=20, purchase_share=0.2, share_morning=0.5)
    categories = [("coffee", 0.5, 2.0), ("kitchen", 0.3, 1.5), ("books", 0.2, 1.0)]
    assert (
        segment_label(segment, stats(), categories)
        == "coffee & kitchen · heavy users · frequent buyers · mornings"
    )


def test_category_names_holding_an_ampersand_are_joined_by_a_comma():
    categories = [("coffee & tea", 0.6, 2.0), ("kitchen", 0.3, 1.3)]
    assert segment_label(stats(), stats(), categories) == "coffee & tea, kitchen"


def test_without_a_distinctive_category_the_label_says_mixed_taste():
    segment = stats(median_events=5, purchase_share=0.03)
    assert (
        segment_label(segment, stats(), [("books", 0.4, 1.1)])
        == "mixed taste, mostly books · light users · browsers"
    )
    # Helper 32: the categories come by lift; "mostly" names the largest share, not the 4% Documentary that
    # is five times everyone's (a MovieLens segment of Drama and Comedy watchers was "mostly Documentary").
    categories = [("Documentary", 0.044, 5.69), ("Drama", 0.214, 1.1), ("Comedy", 0.147, 0.9)]
    assert segment_label(stats(), stats(), categories) == "mixed taste, mostly Drama"


def test_raters_and_weekends():
    segment = stats(mean_rating=4.4, share_weekend=0.5)
    assert segment_label(segment, stats(mean_rating=3.5), []) == "generous raters · weekends"
    assert segment_label(stats(mean_rating=2.9), stats(mean_rating=3.5), []) == "harsh raters"
    # 1.45 times everyone's weekend share, but less than a uniform week's 2/7: not "weekends" (Last.fm).
    assert segment_label(stats(share_weekend=0.16), stats(share_weekend=0.11), []) == "typical users"


def test_a_segment_like_everyone_is_typical_users():
    assert segment_label(stats(), stats(), []) == "typical users"


def test_without_categories_a_segment_is_named_by_its_top_items_that_are_not_everyones():
    # Last.fm's artists have names, no categories: 16 of 20 segments were "typical users".
    items = ["Lady Gaga", "Britney Spears", "Rihanna"]  # its top items, those in everyone's top list left out
    assert (
        segment_label(stats(median_events=20), stats(), [], items)
        == "Lady Gaga & Britney Spears · heavy users"
    )
    assert segment_label(stats(), stats(), [], []) == "typical users"
    # With categories, the categories name the taste, not the items.
    assert segment_label(stats(), stats(), [("pop", 0.5, 1.1)], items) == "mixed taste, mostly pop"


def test_labels_that_name_a_time_of_day_by_the_utc_clock_say_so_when_no_zone_was_named():
    profiles = [{"label": "Drama · nights"}, {"label": "Comedy · weekends"}, {"label": "late evenings & co"}]
    assert clock_notes(profiles, unzoned_share=1.0) == [
        "2 of 3 segment labels name a time of day or weekends, measured by the UTC clock: name the users' time "
        "zone to measure them by theirs (segflow run --timezone America/New_York; a new workspace's source spec "
        "may name it too: timezone = ...)"
    ]
    assert clock_notes(profiles, unzoned_share=0.0) == []  # a zone named (even UTC), or every event's own
    assert clock_notes([{"label": "Drama · heavy users"}], unzoned_share=1.0) == []
    # Helper 36: half the events carry their zone, half are measured by UTC: still said, with how many.
    assert clock_notes(profiles, unzoned_share=0.48)[0].startswith(
        "2 of 3 segment labels name a time of day or weekends, measured by the UTC clock for the 48% of events "
        "without a zone of their own: "
    )
