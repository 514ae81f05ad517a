-- Each mapped catalogue row with the first reason it cannot be used (null when it can).
with mapped as (
    select * from stg_items_mapped
),

final as (
    select
        mapped.*,
        case
            when mapped.cast_error is not null then mapped.cast_error
            when mapped.item_id is null then 'item_id: missing (null or empty)'
            when mapped.price_text is not null and mapped.price is null
                then 'price: not numeric (''' || mapped.price_text || ''')'
        end as reason,
    from mapped
)

select * from final
