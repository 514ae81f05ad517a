-- One ingest batch's events as they land in the Parquet lake, with the event date (UTC) the lake is
-- partitioned by (lake/events/event_date=YYYY-MM-DD/). Params: $batch_id.
with final as (
    select
        events.user_id,
        events.item_id,
        events.event_type,
        events.ts,
        events.value,
        events.quantity,
        events.session_id,
        events.event_id,
        events.item_title,
        events.item_category,
        events.source,
        events.batch_id,
        events.ingested_at,
        cast(events.ts as date) as event_date,
    from events
    where events.batch_id = $batch_id
    order by events.ts, events.user_id, events.item_id
)

select * from final
