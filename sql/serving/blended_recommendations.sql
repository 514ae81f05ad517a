-- A list for a user the snapshot does not hold: the published micro-segment lists blended by the user's
-- membership weights (as the published user lists are), without the items they have seen, topped up with
-- score 0 from the global list (segment -1). Params: $micro_segment_recommendations and
-- $segment_recommendations (Parquet paths), $micro_ids, $weights, $seen_items, $n.
with memberships as (
    select
        unnest($micro_ids::integer []) as micro_segment_id,
        unnest($weights::double []) as weight,
),

seen as (
    select distinct unnest($seen_items::varchar []) as item_id
),

blended as (
    select recs.item_id, sum(memberships.weight * recs.score) as score,
    from read_parquet($micro_segment_recommendations) as recs
    inner join memberships on memberships.micro_segment_id = recs.micro_segment_id
    group by recs.item_id
),

candidates as (
    select blended.item_id, blended.score, 0 as list_order, 0 as list_rank,
    from blended
    where blended.score > 0
    union all
    select recs.item_id, 0.0 as score, 1 as list_order, recs.rank as list_rank,
    from read_parquet($segment_recommendations) as recs
    where recs.segment_id = -1
),

unseen as (
    select
        candidates.*,
        row_number() over (
            partition by candidates.item_id order by candidates.list_order, candidates.score desc
        ) as n_listed,
    from candidates
    anti join seen on seen.item_id = candidates.item_id
),

final as (
    select unseen.item_id, unseen.score, unseen.list_order, unseen.list_rank,
    from unseen
    where unseen.n_listed = 1
)

select final.item_id, final.score,
from final
order by final.list_order, final.score desc, final.list_rank, final.item_id
limit $n
