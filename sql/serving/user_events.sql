-- A user's events in the columns a segmenter reads, ordered as a fit reads them. Params: $user.
with final as (
    select
        events.user_id,
        events.item_id,
        events.event_type,
        events.ts,
        events.value,
        events.quantity,
        events.session_id,
        events.item_category,
        events.item_title,
        events.timezone,
    from events
    where events.user_id = $user
)

select * from final order by final.user_id, final.ts, final.item_id, final.event_type
