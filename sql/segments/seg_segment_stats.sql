-- Per segment: size and the behaviour that describes it, next to the same numbers over all users (segment_id
-- null in the `overall` row). Reads seg_assignments and the staged feature tables (seg_fct_*).
with members as (
    select
        seg_assignments.segment_id,
        activity.n_events,
        activity.share_purchase,
        activity.view_to_cart,
        activity.cart_to_purchase,
        activity.mean_rating,
        time.share_night,
        time.share_early,
        time.share_morning,
        time.share_afternoon,
        time.share_evening,
        time.share_late,
        time.share_weekend,
    from seg_assignments
    join seg_fct_user_activity as activity on activity.user_id = seg_assignments.user_id
    join seg_fct_user_time as time on time.user_id = seg_assignments.user_id
),

final as (
    select
        members.segment_id,
        count(*) as size,
        count(*) / (select count(*) from members) as share,
        median(members.n_events) as median_events,
        avg(members.share_purchase) as purchase_share,
        avg(members.view_to_cart) as view_to_cart,
        avg(members.cart_to_purchase) as cart_to_purchase,
        avg(members.mean_rating) as mean_rating,
        avg(members.share_night) as share_night,
        avg(members.share_early) as share_early,
        avg(members.share_morning) as share_morning,
        avg(members.share_afternoon) as share_afternoon,
        avg(members.share_evening) as share_evening,
        avg(members.share_late) as share_late,
        avg(members.share_weekend) as share_weekend,
    from members
    group by grouping sets ((members.segment_id), ())
)

select * from final order by segment_id nulls first
