-- Per user and category: the share of the user's interaction weight, and the TF-IDF weight of that share
-- (categories every user touches count less). Multi-valued categories ('Action|Comedy') split evenly.
with interactions as (
    select * from fct_interactions where weight > 0
),

categorised as (
    select
        interactions.user_id,
        trim(category.unnest) as category,
        interactions.weight / len(string_split(items.category, '|')) as weight,
    from interactions
    join items on items.item_id = interactions.item_id
    cross join unnest(string_split(items.category, '|')) as category
    where items.category is not null
),

per_user as (
    select categorised.user_id, categorised.category, sum(categorised.weight) as weight,
    from categorised
    group by categorised.user_id, categorised.category
),

shares as (
    select
        per_user.user_id,
        per_user.category,
        per_user.weight / sum(per_user.weight) over (partition by per_user.user_id) as share,
    from per_user
),

idf as (
    select
        shares.category,
        ln((1 + (select count(distinct user_id) from shares)) / (1 + count(*))) + 1 as idf,
    from shares
    group by shares.category
),

final as (
    select shares.user_id, shares.category, shares.share, shares.share * idf.idf as tfidf,
    from shares
    join idf on idf.category = shares.category
)

select * from final
