-- Open a spell for every staged user without an open one (new users, and those closed just before). Reads
-- seg_user_segments (the staged assignments).
insert into user_segment_history (user_id, segment_id, run_id, valid_from, valid_to)
with open_spells as (
    select history.user_id, from user_segment_history as history where history.valid_to is null
),

final as (
    select assigned.user_id, assigned.segment_id, assigned.run_id, assigned.assigned_at as valid_from,
        null::timestamp as valid_to,
    from seg_user_segments as assigned
    anti join open_spells on open_spells.user_id = assigned.user_id
)

select * from final order by final.user_id
