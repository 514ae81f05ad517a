-- The mapped event rows that cannot be inserted, each with the first reason why.
-- Params: $now (timestamp), $event_types (varchar[]).
with mapped as (
    select * from stg_events_mapped
),

reasons as (
    select
        mapped._row,
        case
            when mapped.cast_error is not null then mapped.cast_error
            when mapped.user_id is null then 'user_id: missing (null or empty)'
            when mapped.item_id is null then 'item_id: missing (null or empty)'
            when mapped.event_type is null then 'event_type: missing (null or empty)'
            when mapped.ts is null and mapped.ts_text is null then 'ts: missing (null or empty)'
            when mapped.ts is null then 'ts: does not parse as a timestamp (''' || mapped.ts_text || ''')'
            when mapped.ts > $now + interval 1 day
                then 'ts: more than a day in the future (''' || mapped.ts || ''')'
            when mapped.ts < timestamp '1990-01-01' then 'ts: before 1990 (''' || mapped.ts || ''')'
            when not list_contains($event_types, mapped.event_type)
                then 'event_type: not in the configured set (''' || mapped.event_type || ''')'
            when mapped.value_text is not null and mapped.value is null
                then 'value: not numeric (''' || mapped.value_text || ''')'
            when mapped.quantity_text is not null and mapped.quantity is null
                then 'quantity: not numeric (''' || mapped.quantity_text || ''')'
        end as reason,
    from mapped
),

final as (
    select * from reasons where reason is not null
)

select * from final
