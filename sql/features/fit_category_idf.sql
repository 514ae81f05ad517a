-- Fitted: the inverse document frequency of each category over the users of the fit (categories every user
-- touches count less). A category unseen at fit time gets the idf of a category no user touched.
with users as (
    select count(distinct fct_user_category_share.user_id) as n from fct_user_category_share
),

final as (
    select
        fct_user_category_share.category,
        ln((1 + max(users.n)) / (1 + count(*))) + 1 as idf,
    from fct_user_category_share
    cross join users
    group by fct_user_category_share.category
)

select * from final
