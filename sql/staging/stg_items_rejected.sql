-- The mapped catalogue rows that cannot be used, each with the first reason why.
with mapped as (
    select * from stg_items_mapped
),

reasons as (
    select
        mapped._row,
        case
            when mapped.cast_error is not null then mapped.cast_error
            when mapped.item_id is null then 'item_id: missing (null or empty)'
            when regexp_matches(mapped.item_id, '[[:cntrl:]]')
                then printf('item_id: contains a control character (U+%04X)', unicode(regexp_extract(mapped.item_id, '[[:cntrl:]]')))
            when mapped.price_text is not null and mapped.price is null
                then 'price: not numeric (''' || left(mapped.price_text, 100) || ''')'
            when not isfinite(mapped.price) then 'price: not a finite number (' || mapped.price || ')'
        end as reason,
    from mapped
),

final as (
    select * from reasons where reason is not null
)

select * from final
