-- Per user and category: the user's share of their interaction weight. Multi-valued categories
-- ('Action|Comedy') split evenly. Reads fct_interactions and seg_items(item_id, category).
-- The unnest names its column (split_category(category)): SQLGlot needs it to write Spark's explode.
with interactions as (
    select * from fct_interactions where weight > 0
),

categorised as (
    select
        interactions.user_id,
        trim(split_category.category) as category,
        interactions.weight / array_length(string_split(seg_items.category, '|')) as weight,
    from interactions
    join seg_items on seg_items.item_id = interactions.item_id
    cross join unnest(string_split(seg_items.category, '|')) as split_category(category)
    where seg_items.category is not null
),

per_user as (
    select categorised.user_id, categorised.category, sum(categorised.weight) as weight,
    from categorised
    group by categorised.user_id, categorised.category
),

final as (
    select
        per_user.user_id,
        per_user.category,
        per_user.weight / sum(per_user.weight) over (partition by per_user.user_id) as share,
    from per_user
)

select * from final
