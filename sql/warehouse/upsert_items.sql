-- Params: $updated_at.
insert into items
select
    new.item_id,
    new.title,
    new.category,
    new.price,
    new.text,
    $updated_at as updated_at,
from stg_items_new as new
on conflict (item_id) do update set
    title = excluded.title,
    category = excluded.category,
    price = excluded.price,
    text = excluded.text,
    updated_at = excluded.updated_at
