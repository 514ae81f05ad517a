-- Fitted: each item's number of users, and whether it is niche (outside the top 20% most popular).
with item_users as (
    select fct_interactions.item_id, count(*) as n_users,
    from fct_interactions
    group by fct_interactions.item_id
),

final as (
    select
        item_users.item_id,
        item_users.n_users,
        percent_rank() over (order by item_users.n_users desc) > 0.2 as is_niche,
    from item_users
)

select * from final
