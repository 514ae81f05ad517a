-- A user's segments over time, oldest first, from the warehouse (the exports hold only the current ones).
-- Params: $user.
with final as (
    select history.valid_from, history.valid_to, history.segment_id, history.run_id,
    from user_segment_history as history
    where history.user_id = $user
)

select * from final order by final.valid_from, final.run_id
