"""The `published_segments` suite: the segment tables, staged, before they replace the published ones."""

from __future__ import annotations

from tasks.segment.reach import PLACEMENTS
from validation.gate import Check, Suite, SuitePart, load_great_expectations


def published_segments_suite(prefix: str = "") -> Suite:
    """The suite over the published tables named `<prefix><table>` ("" for the published ones, "seg_" for
    the staged ones)."""
    gx = load_great_expectations()
    user_segments, profiles, recommendations = (
        f"{prefix}user_segments", f"{prefix}segment_profiles", f"{prefix}segment_recommendations"
    )  # fmt: skip
    memberships, micro_recommendations, user_recommendations = (
        f"{prefix}user_memberships", f"{prefix}micro_segment_recommendations", f"{prefix}user_recommendations"
    )  # fmt: skip

    e = gx.expectations
    users_sql = f"""
        select
            segments.user_id,
            segments.segment_id,
            segments.placed_by,
            case when profiles.segment_id is null then segments.segment_id end as segment_without_profile,
        from {user_segments} as segments
        left join {profiles} as profiles on profiles.segment_id = segments.segment_id
    """
    # Every user ingested before the segments were last assigned: one whose first events came later (ingested,
    # not yet scored: `segflow score` or the next run assigns them) is not missing (helper 36).
    coverage_sql = f"""
        select users.user_id, case when segments.user_id is null then users.user_id end as user_without_segment,
        from (
            select user_id from events group by user_id
            having min(ingested_at) <= (select max(assigned_at) from {user_segments})
        ) as users
        left join {user_segments} as segments on segments.user_id = users.user_id
    """
    ranks_sql = f"""
        select segment_id, min(rank) as min_rank, max(rank) as max_rank, count(*) as n_ranks,
            count(distinct rank) as n_distinct_ranks,
        from {recommendations}
        group by segment_id
    """
    items_sql = f"""
        select recs.segment_id, recs.item_id,
            case when items.item_id is null and seen.item_id is null then recs.item_id end as unknown_item_id,
        from {recommendations} as recs
        left join items on items.item_id = recs.item_id
        left join (select distinct item_id from events) as seen on seen.item_id = recs.item_id
    """
    memberships_sql = f"""
        select segments.user_id, sum(memberships.weight) as total_weight, count(memberships.user_id) as n_memberships,
        from {user_segments} as segments
        left join {memberships} as memberships on memberships.user_id = segments.user_id
        group by segments.user_id
    """
    micro_ranks_sql = f"""
        select micro_segment_id, min(rank) as min_rank, max(rank) as max_rank, count(*) as n_ranks,
            count(distinct rank) as n_distinct_ranks,
        from {micro_recommendations}
        group by micro_segment_id
    """
    # A user who has interacted with every item has nothing left to recommend: an empty list is right for them.
    user_lists_sql = f"""
        with lists as (
            select segments.user_id, count(recs.user_id) as n_items, coalesce(max(recs.rank), 0) as max_rank,
                count(distinct recs.rank) as n_distinct_ranks, count(seen.user_id) as n_seen,
            from {user_segments} as segments
            left join {user_recommendations} as recs on recs.user_id = segments.user_id
            left join (select distinct user_id, item_id from events) as seen
                on seen.user_id = recs.user_id and seen.item_id = recs.item_id
            group by segments.user_id
        ),
        unseen as (
            select users.user_id, (select count(distinct item_id) from events) - count(distinct events.item_id) as n_unseen,
            from (select distinct user_id from lists) as users
            left join events on events.user_id = users.user_id
            group by users.user_id
        )
        select lists.*, lists.n_items = 0 and unseen.n_unseen > 0 as list_missing,
        from lists
        inner join unseen on unseen.user_id = lists.user_id
    """
    return Suite(
        "published_segments",
        [
            SuitePart(
                "user_segments",
                users_sql,
                [
                    Check(
                        "user_id_not_null",
                        "user_segments.user_id not null",
                        e.ExpectColumnValuesToNotBeNull(column="user_id"),
                    ),
                    Check(
                        "user_id_unique",
                        "user_segments.user_id unique",
                        e.ExpectColumnValuesToBeUnique(column="user_id"),
                    ),
                    Check(
                        "segment_has_profile",
                        "every segment_id present in segment_profiles",
                        e.ExpectColumnValuesToBeNull(column="segment_without_profile"),
                    ),
                    Check(  # null: users published before placed_by was kept
                        "placed_by_known",
                        "placed_by is centre, taste, far or none",
                        e.ExpectColumnValuesToBeInSet(column="placed_by", value_set=list(PLACEMENTS)),
                    ),
                ],
                chunk_key="user_id",
            ),
            SuitePart(
                "coverage",
                coverage_sql,
                [
                    Check(
                        "every_user_segmented",
                        "every user with events (ingested before the last assignment) has a segment",
                        e.ExpectColumnValuesToBeNull(column="user_without_segment"),
                    )
                ],
                chunk_key="user_id",
            ),
            SuitePart(
                "ranks",
                ranks_sql,
                [
                    Check(
                        "ranks_start_at_1",
                        "recommendation ranks start at 1 in every segment",
                        e.ExpectColumnValuesToBeBetween(column="min_rank", min_value=1, max_value=1),
                        unit="segments",
                    ),
                    Check(
                        "ranks_contiguous",
                        "recommendation ranks contiguous in every segment",
                        e.ExpectColumnPairValuesToBeEqual(column_A="max_rank", column_B="n_distinct_ranks"),
                        unit="segments",
                    ),
                    Check(
                        "ranks_unique",
                        "recommendation ranks unique in every segment",
                        e.ExpectColumnPairValuesToBeEqual(column_A="n_ranks", column_B="n_distinct_ranks"),
                        unit="segments",
                    ),
                ],
                id_columns=["segment_id"],
            ),
            SuitePart(
                "recommended_items",
                items_sql,
                [
                    Check(
                        "recommended_items_known",
                        "every recommended item is in items or events",
                        e.ExpectColumnValuesToBeNull(column="unknown_item_id"),
                    )
                ],
                chunk_key="item_id",
            ),
            SuitePart(
                "memberships",
                memberships_sql,
                [
                    Check(
                        "every_user_has_memberships",
                        "every segmented user has micro-segment memberships",
                        e.ExpectColumnValuesToBeBetween(column="n_memberships", min_value=1),
                    ),
                    Check(
                        "membership_weights_sum_to_1",
                        "each user's membership weights sum to 1",
                        e.ExpectColumnValuesToBeBetween(
                            column="total_weight", min_value=0.999, max_value=1.001
                        ),
                    ),
                ],
                chunk_key="user_id",
            ),
            SuitePart(
                "micro_ranks",
                micro_ranks_sql,
                [
                    Check(
                        "micro_ranks_start_at_1",
                        "micro-segment list ranks start at 1",
                        e.ExpectColumnValuesToBeBetween(column="min_rank", min_value=1, max_value=1),
                        unit="micro-segments",
                    ),
                    Check(
                        "micro_ranks_contiguous",
                        "micro-segment list ranks contiguous",
                        e.ExpectColumnPairValuesToBeEqual(column_A="max_rank", column_B="n_distinct_ranks"),
                        unit="micro-segments",
                    ),
                ],
                id_columns=["micro_segment_id"],
            ),
            SuitePart(
                "user_lists",
                user_lists_sql,
                [
                    Check(
                        "every_user_has_a_list",
                        "every segmented user with an item left to recommend has a blended list",
                        e.ExpectColumnValuesToBeInSet(column="list_missing", value_set=[False]),
                    ),
                    Check(
                        "user_ranks_contiguous",
                        "blended list ranks contiguous from 1",
                        e.ExpectColumnPairValuesToBeEqual(column_A="max_rank", column_B="n_distinct_ranks"),
                    ),
                    Check(
                        "user_lists_exclude_seen",
                        "no blended list holds an item the user has seen",
                        e.ExpectColumnValuesToBeBetween(column="n_seen", min_value=0, max_value=0),
                    ),
                ],
                chunk_key="user_id",
            ),
        ],
    )
