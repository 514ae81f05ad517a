-- The valid catalogue rows that are duplicates: the last row per item_id wins, so earlier rows of the same
-- item are duplicates, and so is a row equal to the item already in the warehouse.
with valid as (
    select mapped.*
    from stg_items_mapped as mapped
    anti join stg_items_rejected as rejected on rejected._row = mapped._row
),

superseded as (
    select valid._row
    from valid
    qualify row_number() over (partition by valid.item_id order by valid._row desc) > 1
),

unchanged as (
    select valid._row
    from valid
    semi join items as existing
        on existing.item_id = valid.item_id
        and existing.title is not distinct from valid.title
        and existing.category is not distinct from valid.category
        and existing.price is not distinct from valid.price
        and existing.text is not distinct from valid.text
),

final as (
    select _row from superseded
    union
    select _row from unchanged
)

select * from final
