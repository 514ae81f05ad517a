-- Items named by events that carry item_title / item_category, for sources without a catalogue file.
-- Params: $updated_at.
with named as (
    select
        new.item_id,
        arg_max(new.item_title, new.ts) filter (where new.item_title is not null) as title,
        arg_max(new.item_category, new.ts) filter (where new.item_category is not null) as category,
    from stg_events_new as new
    where new.item_title is not null or new.item_category is not null
    group by new.item_id
),

final as (
    select
        named.item_id,
        named.title,
        named.category,
        null::double as price,
        concat_ws(' ', named.title, named.category) as text,
        $updated_at as updated_at,
    from named
)

insert into items
select * from final
on conflict (item_id) do update set
    title = coalesce(excluded.title, items.title),
    category = coalesce(excluded.category, items.category),
    text = coalesce(items.text, excluded.text),
    updated_at = excluded.updated_at
