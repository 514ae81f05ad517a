-- A user's published segment with its label. Params: $user, $user_segments, $segment_profiles.
with assignment as (
    select user_segments.user_id, user_segments.segment_id, user_segments.distance,
    from read_parquet($user_segments) as user_segments
    where user_segments.user_id = $user
),

final as (
    select assignment.segment_id, profiles.label, assignment.distance,
    from assignment
    left join read_parquet($segment_profiles) as profiles on profiles.segment_id = assignment.segment_id
)

select * from final
