-- The catalogue rows to upsert: neither rejected nor duplicates.
with mapped as (
    select * from stg_items_mapped
),

final as (
    select mapped.*
    from mapped
    anti join stg_items_rejected as rejected on rejected._row = mapped._row
    anti join stg_items_duplicates as duplicates on duplicates._row = mapped._row
)

select * from final
