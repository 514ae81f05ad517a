-- Per segment and category: the members' mean share of that category, and its lift over all users.
with shares as (
    select seg_assignments.segment_id, category.user_id, category.category, category.share,
    from seg_assignments
    join seg_fct_user_category as category on category.user_id = seg_assignments.user_id
),

n_users as (
    select seg_assignments.segment_id, count(*) as n from seg_assignments group by seg_assignments.segment_id
),

per_segment as (
    select shares.segment_id, shares.category, sum(shares.share) / any_value(n_users.n) as share,
    from shares
    join n_users on n_users.segment_id = shares.segment_id
    group by shares.segment_id, shares.category
),

overall as (
    select shares.category, sum(shares.share) / (select count(*) from seg_assignments) as share,
    from shares
    group by shares.category
),

final as (
    select per_segment.segment_id, per_segment.category, per_segment.share, per_segment.share / overall.share as lift,
    from per_segment
    join overall on overall.category = per_segment.category
)

select * from final order by segment_id, lift desc
