-- Titles of the given items, from the warehouse's catalogue. Params: $item_ids (a list of item ids).
with wanted as (
    select distinct unnest($item_ids::varchar []) as item_id
),

final as (
    select items.item_id, items.title,
    from items
    semi join wanted on wanted.item_id = items.item_id
)

select * from final
