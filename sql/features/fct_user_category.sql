-- Per user and category: the share of the user's interaction weight and that share x the fitted idf
-- (fit_category_idf; $unseen_idf for a category the fit never saw).
with final as (
    select
        fct_user_category_share.user_id,
        fct_user_category_share.category,
        fct_user_category_share.share,
        fct_user_category_share.share * coalesce(fit_category_idf.idf, $unseen_idf) as tfidf,
    from fct_user_category_share
    left join fit_category_idf on fit_category_idf.category = fct_user_category_share.category
)

select * from final
