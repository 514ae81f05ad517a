-- The titles of every item a staged published list names, exported with the lists so a reader needs no
-- warehouse to name them. Reads the staged seg_* lists and items.
with listed as (
    select recs.item_id, from seg_segment_recommendations as recs
    union
    select recs.item_id, from seg_micro_segment_recommendations as recs
    union
    select recs.item_id, from seg_user_recommendations as recs
),

final as (
    select listed.item_id, items.title,
    from listed
    left join items on items.item_id = listed.item_id
)

select * from final order by final.item_id
