-- Titles of the given items, from the snapshot's own catalogue extract. Params: $item_titles (a Parquet path),
-- $item_ids.
with wanted as (
    select distinct unnest($item_ids::varchar []) as item_id
),

final as (
    select titles.item_id, titles.title,
    from read_parquet($item_titles) as titles
    semi join wanted on wanted.item_id = titles.item_id
)

select * from final
