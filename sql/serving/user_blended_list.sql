-- A user's published ready list: the micro-segment lists blended by membership weight, seen items already
-- excluded at publish time. Params: $user_recommendations (a Parquet path), $user, $n.
with listed as (
    select recs.rank, recs.item_id, recs.score,
    from read_parquet($user_recommendations) as recs
    where recs.user_id = $user
),

final as (
    select listed.rank, listed.item_id, listed.score,
    from listed
)

select * from final order by final.rank limit $n
