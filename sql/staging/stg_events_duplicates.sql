-- The valid staged events that are duplicates. With an event_id, an event is a duplicate when an earlier row
-- of the batch or a stored event has the same event_id; without one, when it equals an earlier row or a stored
-- event in all canonical columns. Repeats inside the batch are found by `dedup_key` (a hash of the event_id,
-- or of user, item, type and ts) first, so only the rows whose key repeats are compared in full.
with mapped as (
    select * from stg_events_mapped
),

repeated_keys as (
    select mapped.dedup_key from mapped group by mapped.dedup_key having count(*) > 1
),

valid as (
    select mapped.*
    from mapped
    anti join stg_events_rejected as rejected on rejected._row = mapped._row
),

suspects as (
    select valid.*
    from valid
    semi join repeated_keys on repeated_keys.dedup_key = valid.dedup_key
),

repeats_in_batch as (
    select suspects._row
    from suspects
    qualify row_number() over (
        partition by
            suspects.event_id,
            case when suspects.event_id is null then suspects.user_id end,
            case when suspects.event_id is null then suspects.item_id end,
            case when suspects.event_id is null then suspects.event_type end,
            case when suspects.event_id is null then suspects.ts end,
            case when suspects.event_id is null then suspects.value end,
            case when suspects.event_id is null then suspects.quantity end,
            case when suspects.event_id is null then suspects.session_id end,
            case when suspects.event_id is null then suspects.item_title end,
            case when suspects.event_id is null then suspects.item_category end
        order by suspects._row
    ) > 1
),

already_stored as (
    select valid._row
    from valid
    semi join events as existing
        on existing.user_id = valid.user_id
        and existing.item_id = valid.item_id
        and existing.event_type = valid.event_type
        and existing.ts = valid.ts
        and existing.value is not distinct from valid.value
        and existing.quantity is not distinct from valid.quantity
        and existing.session_id is not distinct from valid.session_id
        and existing.event_id is not distinct from valid.event_id
        and existing.item_title is not distinct from valid.item_title
        and existing.item_category is not distinct from valid.item_category
    where valid.event_id is null
),

id_already_stored as (
    select valid._row
    from valid
    semi join events as existing on existing.event_id = valid.event_id
),

final as (
    select repeats_in_batch._row from repeats_in_batch
    union
    select already_stored._row from already_stored
    union
    select id_already_stored._row from id_already_stored
)

select * from final
