-- Per user: activity, recency / frequency / monetary, event-type shares, funnel rates and sessions.
-- Recency is measured from the fitted reference time $end_ts (the last event the fit saw), so it does not
-- drift with the wall clock and a user scored later is measured on the same scale.
-- Portable to Spark SQL (tests/sql/test_features_portable.py): times are compared in microseconds (Spark's
-- second difference truncates, DuckDB's counts boundaries) and divisors are integers (in Spark a decimal
-- literal makes the result a decimal).
with per_user as (
    select
        seg_events.user_id,
        count(*) as n_events,
        count(distinct seg_events.item_id) as n_items,
        count(distinct cast(seg_events.local_ts as date)) as active_days,  -- days by the users' clock
        min(seg_events.ts) as first_ts,
        max(seg_events.ts) as last_ts,
        count(*) filter (where seg_events.event_type = 'view') as n_views,
        count(*) filter (where seg_events.event_type = 'add_to_cart') as n_carts,
        count(*) filter (where seg_events.event_type = 'purchase') as n_purchases,
        count(*) filter (where seg_events.event_type = 'rate') as n_ratings,
        coalesce(sum(seg_events.value) filter (where seg_events.event_type = 'purchase'), 0) as monetary,
        avg(seg_events.value) filter (where seg_events.event_type = 'rate') as mean_rating,
        count(distinct seg_events.session_id) as n_sessions,
    from seg_events
    group by seg_events.user_id
),

final as (
    select
        per_user.user_id,
        per_user.n_events,
        per_user.n_items,
        per_user.active_days,
        greatest(date_diff('microsecond', per_user.last_ts, $end_ts) / 86400000000, 0) as recency_days,
        -- Over the days from the first event to the reference time, or to the user's last event when that is
        -- later (a user scored after the fit, whose whole history may follow it: not one day).
        per_user.active_days / greatest(
            date_diff('microsecond', per_user.first_ts, greatest(per_user.last_ts, $end_ts)) / 86400000000, 1
        ) as frequency,
        per_user.monetary,
        per_user.n_views / per_user.n_events as share_view,
        per_user.n_carts / per_user.n_events as share_cart,
        per_user.n_purchases / per_user.n_events as share_purchase,
        per_user.n_ratings / per_user.n_events as share_rate,
        case when per_user.n_views > 0 then per_user.n_carts / per_user.n_views end as view_to_cart,
        case when per_user.n_carts > 0 then per_user.n_purchases / per_user.n_carts end as cart_to_purchase,
        per_user.mean_rating,
        per_user.n_sessions,
        case when per_user.n_sessions > 0 then per_user.n_events / per_user.n_sessions end as events_per_session,
    from per_user
)

select * from final
