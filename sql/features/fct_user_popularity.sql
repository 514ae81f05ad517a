-- Per user: affinity for popular vs niche items and diversity. Popularity is the item's share of users;
-- niche items are outside the top 20% most popular; entropy is over the user's categories.
with item_users as (
    select fct_interactions.item_id, count(*) as n_users,
    from fct_interactions
    group by fct_interactions.item_id
),

ranked as (
    select
        item_users.item_id,
        item_users.n_users,
        percent_rank() over (order by item_users.n_users desc) as popularity_rank,
    from item_users
),

per_user as (
    select
        fct_interactions.user_id,
        avg(ln(ranked.n_users)) as mean_log_popularity,
        avg(case when ranked.popularity_rank > 0.2 then 1.0 else 0.0 end) as share_niche,
    from fct_interactions
    join ranked on ranked.item_id = fct_interactions.item_id
    group by fct_interactions.user_id
),

entropy as (
    select
        fct_user_category.user_id,
        -sum(fct_user_category.share * ln(fct_user_category.share)) as category_entropy,
    from fct_user_category
    where fct_user_category.share > 0
    group by fct_user_category.user_id
),

final as (
    select per_user.*, coalesce(entropy.category_entropy, 0) as category_entropy,
    from per_user
    left join entropy on entropy.user_id = per_user.user_id
)

select * from final
