-- A user's published segment with its label, distance and placed_by (in snapshots that have it). Params:
-- $user, $user_segments, $segment_profiles.
with assignment as (
    select user_segments.* exclude (run_id, assigned_at),
    from read_parquet($user_segments) as user_segments
    where user_segments.user_id = $user
),

final as (
    select assignment.* exclude (user_id), profiles.label,
    from assignment
    left join read_parquet($segment_profiles) as profiles on profiles.segment_id = assignment.segment_id
)

select * from final
