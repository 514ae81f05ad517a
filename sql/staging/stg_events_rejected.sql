-- The mapped event rows that cannot be inserted, each with the first reason why. A value quoted in a
-- reason is cut to 100 characters: a reason names the problem, the quarantine record keeps the row.
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
            when regexp_matches(mapped.user_id, '[[:cntrl:]]')
                then printf('user_id: contains a control character (U+%04X)', unicode(regexp_extract(mapped.user_id, '[[:cntrl:]]')))
            when mapped.item_id is null then 'item_id: missing (null or empty)'
            when regexp_matches(mapped.item_id, '[[:cntrl:]]')
                then printf('item_id: contains a control character (U+%04X)', unicode(regexp_extract(mapped.item_id, '[[:cntrl:]]')))
            when mapped.event_type is null then 'event_type: missing (null or empty)'
            when mapped.ts is null and mapped.ts_text is null then 'ts: missing (null or empty)'
            when mapped.ts is null
                then 'ts: does not parse as a timestamp (''' || left(mapped.ts_text, 100) || ''')'
            when mapped.ts > $now + interval 1 day
                then 'ts: more than a day in the future (''' || mapped.ts || ''')'
            when mapped.ts < timestamp '1990-01-01' then 'ts: before 1990 (''' || mapped.ts || ''')'
            when not list_contains($event_types, mapped.event_type)
                then 'event_type: not in the configured set (''' || left(mapped.event_type, 100) || ''')'
            when mapped.value_text is not null and mapped.value is null
                then 'value: not numeric (''' || left(mapped.value_text, 100) || ''')'
            when not isfinite(mapped.value) then 'value: not a finite number (' || mapped.value || ')'
            when mapped.quantity_text is not null and mapped.quantity is null
                then 'quantity: not numeric (''' || left(mapped.quantity_text, 100) || ''')'
            when not isfinite(mapped.quantity) then 'quantity: not a finite number (' || mapped.quantity || ')'
            when mapped.timezone_text is not null and mapped.timezone is null
                then 'timezone: not a time zone name or UTC offset (''' || left(mapped.timezone_text, 100) || ''')'
            when regexp_matches(mapped.session_id, '[[:cntrl:]]')
                then printf('session_id: contains a control character (U+%04X)', unicode(regexp_extract(mapped.session_id, '[[:cntrl:]]')))
            when regexp_matches(mapped.event_id, '[[:cntrl:]]')
                then printf('event_id: contains a control character (U+%04X)', unicode(regexp_extract(mapped.event_id, '[[:cntrl:]]')))
        end as reason,
    from mapped
),

final as (
    select * from reasons where reason is not null
)

select * from final
