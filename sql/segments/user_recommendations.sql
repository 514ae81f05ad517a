-- A user's recommendations: their segment's list without the items they have interacted with, topped up
-- from the global list (segment -1). Params: $user, $segment, $n. Reads the published tables.
with seen as (
    select distinct events.item_id from events where events.user_id = $user
),

candidates as (
    select recs.item_id, recs.score, recs.rank, 0 as list_order,
    from segment_recommendations as recs
    where recs.segment_id = $segment
    union all
    select recs.item_id, recs.score, recs.rank, 1 as list_order,
    from segment_recommendations as recs
    where recs.segment_id = -1
),

unseen as (
    select
        candidates.*,
        row_number() over (partition by candidates.item_id order by candidates.list_order, candidates.rank) as n_listed,
    from candidates
    anti join seen on seen.item_id = candidates.item_id
),

final as (
    select unseen.item_id, items.title, unseen.score, unseen.list_order, unseen.rank,
    from unseen
    left join items on items.item_id = unseen.item_id
    where unseen.n_listed = 1
)

select final.item_id, final.title, final.score from final order by final.list_order, final.rank limit $n
