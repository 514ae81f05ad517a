-- A user's published micro-segment memberships, heaviest first. Params: $user_memberships (a Parquet path),
-- $user.
with memberships as (
    select memberships.micro_segment_id, memberships.weight,
    from read_parquet($user_memberships) as memberships
    where memberships.user_id = $user
),

final as (
    select memberships.micro_segment_id, memberships.weight,
    from memberships
)

select * from final order by final.weight desc, final.micro_segment_id
