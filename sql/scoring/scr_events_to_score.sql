-- Every event of the users to score (all of their history, not only the new events: a segment describes the
-- whole user), in the columns a segmenter reads, ordered as a fit reads them. Reads events, scr_users.
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
    semi join scr_users on scr_users.user_id = events.user_id
)

select * from final order by final.user_id, final.ts, final.item_id, final.event_type
