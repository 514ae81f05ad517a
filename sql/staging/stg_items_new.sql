-- Valid catalogue rows: the last row per item_id wins; earlier rows of the same item, and rows equal to
-- the item already in the warehouse, are duplicates.
with valid as (
    select * from stg_items_checked where reason is null
),

numbered as (
    select
        valid.*,
        row_number() over (partition by valid.item_id order by valid._row desc) as n_later,
    from valid
),

final as (
    select
        numbered.*,
        numbered.n_later > 1
        or exists (
            select 1
            from items as existing
            where existing.item_id = numbered.item_id
                and existing.title is not distinct from numbered.title
                and existing.category is not distinct from numbered.category
                and existing.price is not distinct from numbered.price
                and existing.text is not distinct from numbered.text
        ) as is_duplicate,
    from numbered
)

select * from final
