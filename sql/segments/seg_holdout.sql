-- The evaluation holdout: for each user with at least $min_items distinct items in `seg_events`, the last
-- $fraction of those items (at least 1) by first interaction. Ties in time break by item_id.
with firsts as (
    select seg_events.user_id, seg_events.item_id, min(seg_events.ts) as first_ts,
    from seg_events
    group by seg_events.user_id, seg_events.item_id
),

ranked as (
    select
        firsts.*,
        row_number() over (partition by firsts.user_id order by firsts.first_ts desc, firsts.item_id desc) as n_from_end,
        count(*) over (partition by firsts.user_id) as n_items,
    from firsts
),

final as (
    select ranked.user_id, ranked.item_id,
    from ranked
    where ranked.n_items >= $min_items
        and ranked.n_from_end <= greatest(1, cast(floor($fraction * ranked.n_items) as integer))
)

select * from final
