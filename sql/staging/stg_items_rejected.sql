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
            when mapped.price_text is not null and mapped.price is null
                then 'price: not numeric (''' || mapped.price_text || ''')'
        end as reason,
    from mapped
),

final as (
    select * from reasons where reason is not null
)

select * from final
