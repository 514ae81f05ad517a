-- Each segment's top $n_items items, scored by the share of the segment's members who interacted with the
-- item (ties by the item's share of all users), plus segment -1: the global list for users with no segment.
-- Reads seg_assignments(user_id, segment_id) and seg_fct_interactions. Param: $n_items, $run_id.
with touched as (
    select distinct seg_fct_interactions.user_id, seg_fct_interactions.item_id,
    from seg_fct_interactions
    where seg_fct_interactions.weight > 0
),

sizes as (
    select seg_assignments.segment_id, count(*) as n_members,
    from seg_assignments
    group by seg_assignments.segment_id
),

global_share as (
    select touched.item_id, count(*) / (select count(*) from seg_assignments) as share,
    from touched
    group by touched.item_id
),

per_segment as (
    select seg_assignments.segment_id, touched.item_id, count(*) / any_value(sizes.n_members) as score,
    from touched
    join seg_assignments on seg_assignments.user_id = touched.user_id
    join sizes on sizes.segment_id = seg_assignments.segment_id
    where seg_assignments.segment_id >= 0
    group by seg_assignments.segment_id, touched.item_id
),

scored as (
    select per_segment.segment_id, per_segment.item_id, per_segment.score, global_share.share,
    from per_segment
    join global_share on global_share.item_id = per_segment.item_id
    union all
    select -1 as segment_id, global_share.item_id, global_share.share as score, global_share.share,
    from global_share
),

ranked as (
    select
        scored.segment_id,
        row_number() over (
            partition by scored.segment_id order by scored.score desc, scored.share desc, scored.item_id
        ) as rank,
        scored.item_id,
        scored.score,
    from scored
),

final as (
    select ranked.segment_id, ranked.rank, ranked.item_id, round(ranked.score, 6) as score, $run_id as run_id,
    from ranked
    where ranked.rank <= $n_items
)

select * from final order by segment_id, rank
