-- The users scoring assigns: those with an event ingested after their published assignment, and those with
-- events but no assignment (new users). Reads events and user_segments.
with last_ingested as (
    select events.user_id, max(events.ingested_at) as ingested_at,
    from events
    group by events.user_id
),

final as (
    select last_ingested.user_id, user_segments.user_id is null as is_new,
    from last_ingested
    left join user_segments on user_segments.user_id = last_ingested.user_id
    where user_segments.user_id is null or last_ingested.ingested_at > user_segments.assigned_at
)

select * from final order by final.user_id
