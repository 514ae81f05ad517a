-- The items of the events (seg_events) as the features know them: the catalogue's title, category and text
-- (`catalogue`), and where it lacks an item or a value, the latest one the events name (feeds that name items
-- only in their rows; ties in time go to the greatest value, so every engine picks the same one).
with used as (
    select distinct seg_events.item_id from seg_events
),

titles as (
    select
        seg_events.item_id,
        seg_events.item_title as title,
        row_number() over (
            partition by seg_events.item_id order by seg_events.ts desc, seg_events.item_title desc
        ) as recency,
    from seg_events
    where seg_events.item_title is not null
),

categories as (
    select
        seg_events.item_id,
        seg_events.item_category as category,
        row_number() over (
            partition by seg_events.item_id order by seg_events.ts desc, seg_events.item_category desc
        ) as recency,
    from seg_events
    where seg_events.item_category is not null
),

final as (
    select
        used.item_id,
        coalesce(catalogue.title, titles.title) as title,
        coalesce(catalogue.category, categories.category) as category,
        catalogue.text,
    from used
    left join catalogue on catalogue.item_id = used.item_id
    left join titles on titles.item_id = used.item_id and titles.recency = 1
    left join categories on categories.item_id = used.item_id and categories.recency = 1
)

select * from final
