-- Valid staged events, each flagged as a duplicate when it equals an earlier row of the batch or an event
-- already in the warehouse in all canonical columns, or shares a mapped event_id with one.
with valid as (
    select * from stg_events_checked where reason is null
),

numbered as (
    select
        valid.*,
        row_number() over (
            partition by
                valid.user_id, valid.item_id, valid.event_type, valid.ts, valid.value, valid.quantity,
                valid.session_id, valid.event_id, valid.item_title, valid.item_category
            order by valid._row
        ) as n_same,
        case
            when valid.event_id is null then 1
            else row_number() over (partition by valid.event_id order by valid._row)
        end as n_same_id,
    from valid
),

final as (
    select
        numbered.*,
        numbered.n_same > 1
        or numbered.n_same_id > 1
        or exists (
            select 1
            from events as existing
            where existing.user_id = numbered.user_id
                and existing.item_id = numbered.item_id
                and existing.event_type = numbered.event_type
                and existing.ts = numbered.ts
                and existing.value is not distinct from numbered.value
                and existing.quantity is not distinct from numbered.quantity
                and existing.session_id is not distinct from numbered.session_id
                and existing.event_id is not distinct from numbered.event_id
                and existing.item_title is not distinct from numbered.item_title
                and existing.item_category is not distinct from numbered.item_category
        )
        or (
            numbered.event_id is not null
            and exists (select 1 from events as existing where existing.event_id = numbered.event_id)
        ) as is_duplicate,
    from numbered
)

select * from final
