-- Per user: affinity for popular vs niche items (fit_item_popularity: an item the fit never saw counts as
-- seen by one user, and niche) and the diversity of the user's categories.
with per_user as (
    select
        fct_interactions.user_id,
        avg(ln(coalesce(fit_item_popularity.n_users, 1))) as mean_log_popularity,
        avg(case when coalesce(fit_item_popularity.is_niche, true) then 1 else 0 end) as share_niche,
    from fct_interactions
    left join fit_item_popularity on fit_item_popularity.item_id = fct_interactions.item_id
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
