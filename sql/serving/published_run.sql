-- What the published snapshot itself says about its run: the run id, when its users were assigned, how
-- many users and segments (-1, HDBSCAN's noise, is not a segment). Params: $user_segments, $segment_profiles.
with assignments as (
    select user_segments.run_id, user_segments.assigned_at,
    from read_parquet($user_segments) as user_segments
),

profiles as (
    select segment_profiles.segment_id,
    from read_parquet($segment_profiles) as segment_profiles
),

final as (
    select
        any_value(assignments.run_id) as run_id,
        max(assignments.assigned_at) as assigned_at,
        count(*) as n_users,
        (select count(*) from profiles where profiles.segment_id >= 0) as k,
    from assignments
)

select * from final
