-- A user's recommendations from the published lists: their segment's list without the items they have seen,
-- topped up from the global list (segment -1). Params: $segment_recommendations (a Parquet path), $segment,
-- $seen_items (a list of item ids, empty when unknown), $n.
with seen as (
    select distinct unnest($seen_items::varchar []) as item_id
),

candidates as (
    select recs.item_id, recs.score, recs.rank, 0 as list_order,
    from read_parquet($segment_recommendations) as recs
    where recs.segment_id = $segment
    union all
    select recs.item_id, recs.score, recs.rank, 1 as list_order,
    from read_parquet($segment_recommendations) as recs
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
    select unseen.item_id, unseen.score, unseen.list_order, unseen.rank,
    from unseen
    where unseen.n_listed = 1
)

select final.item_id, final.score from final order by final.list_order, final.rank limit $n
