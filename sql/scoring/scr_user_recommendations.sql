-- The ready list of every scored user, as a full run makes it: the published micro-segment lists blended by
-- the user's membership weights, items the user has interacted with excluded, topped up (score 0) from the
-- global list. Params: $n (items per user). Reads scr_user_memberships, micro_segment_recommendations,
-- segment_recommendations, events.
with blended as (
    select memberships.user_id, recs.item_id, sum(memberships.weight * recs.score) as score,
    from scr_user_memberships as memberships
    inner join micro_segment_recommendations as recs on recs.micro_segment_id = memberships.micro_segment_id
    group by memberships.user_id, recs.item_id
),

users as (
    select distinct memberships.user_id, from scr_user_memberships as memberships
),

candidates as (
    select blended.user_id, blended.item_id, blended.score, 0 as list_order, 0 as list_rank,
    from blended
    where blended.score > 0
    union all
    select users.user_id, recs.item_id, 0.0 as score, 1 as list_order, recs.rank as list_rank,
    from users
    cross join segment_recommendations as recs
    where recs.segment_id = -1
),

seen as (
    select distinct events.user_id, events.item_id,
    from events
    semi join users on users.user_id = events.user_id
),

unseen as (
    select
        candidates.*,
        row_number() over (
            partition by candidates.user_id, candidates.item_id order by candidates.list_order
        ) as n_listed,
    from candidates
    anti join seen on seen.user_id = candidates.user_id and seen.item_id = candidates.item_id
),

ranked as (
    select
        unseen.user_id,
        unseen.item_id,
        round(unseen.score, 6) as score,
        row_number() over (
            partition by unseen.user_id
            order by unseen.list_order, unseen.score desc, unseen.list_rank, unseen.item_id
        ) as rank,
    from unseen
    where unseen.n_listed = 1
),

final as (
    select ranked.user_id, ranked.rank, ranked.item_id, ranked.score,
    from ranked
    where ranked.rank <= $n
)

select * from final order by final.user_id, final.rank
