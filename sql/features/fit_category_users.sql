-- Fitted: the number of users with a category share (fct_user_category_share), one row. A category the fit
-- never saw gets the idf of a category none of them touched: ln(1 + n_users) + 1.
with final as (
    select count(distinct fct_user_category_share.user_id) as n_users,
    from fct_user_category_share
)

select * from final
