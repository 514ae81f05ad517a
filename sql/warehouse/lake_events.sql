-- One ingest batch's events as they land in the Parquet lake: every column of `events` (the lake mirrors
-- it), and the event date (UTC) the lake is partitioned by (lake/events/event_date=YYYY-MM-DD/).
-- Params: $batch_id.
with final as (
    select
        events.*,
        cast(events.ts as date) as event_date,
    from events
    where events.batch_id = $batch_id
    order by events.ts, events.user_id, events.item_id
)

select * from final
