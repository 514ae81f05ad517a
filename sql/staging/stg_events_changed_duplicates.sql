-- The duplicates by event_id whose event differs from the one kept (the stored event, else the batch's first
-- row with that event_id) in user, item, type, time, value or quantity: a corrected re-delivery, whose
-- corrections are not stored (segflow never changes a stored event). One row: how many, and an example.
with duplicates as (
    select mapped.*
    from stg_events_mapped as mapped
    semi join stg_events_duplicates as duplicate on duplicate._row = mapped._row
    where mapped.event_id is not null
),

stored as (
    select events.event_id, events.user_id, events.item_id, events.event_type, events.ts, events.value,
        events.quantity
    from events
    semi join duplicates on duplicates.event_id = events.event_id
    qualify row_number() over (partition by events.event_id order by events.ingested_at, events.ts) = 1
),

first_in_batch as (
    select mapped.event_id, mapped.user_id, mapped.item_id, mapped.event_type, mapped.ts, mapped.value,
        mapped.quantity
    from stg_events_mapped as mapped
    semi join duplicates on duplicates.event_id = mapped.event_id
    anti join stored on stored.event_id = mapped.event_id
    anti join stg_events_rejected as rejected on rejected._row = mapped._row
    qualify row_number() over (partition by mapped.event_id order by mapped._row) = 1
),

kept as (
    select * from stored
    union all
    select * from first_in_batch
),

changed as (
    select duplicates.event_id
    from duplicates
    inner join kept on kept.event_id = duplicates.event_id
    where (duplicates.user_id, duplicates.item_id, duplicates.event_type, duplicates.ts, duplicates.value,
        duplicates.quantity)
        is distinct from (kept.user_id, kept.item_id, kept.event_type, kept.ts, kept.value, kept.quantity)
)

select count(*) as n_changed, min(changed.event_id) as example from changed
