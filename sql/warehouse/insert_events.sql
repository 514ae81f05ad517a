-- Params: $source, $batch_id, $ingested_at.
insert into events
select
    new.user_id,
    new.item_id,
    new.event_type,
    new.ts,
    new.value,
    new.quantity,
    new.session_id,
    new.event_id,
    new.item_title,
    new.item_category,
    $source as source,
    $batch_id as batch_id,
    $ingested_at as ingested_at,
    new.timezone,
from stg_events_new as new
