-- Per user: when they are active. Shares of events in six four-hour day parts, the weekend share, and the
-- mean hour as a point on the clock (sin, cos), so 23:00 and 01:00 are close.
with timed as (
    select
        seg_events.user_id,
        hour(seg_events.ts) + minute(seg_events.ts) / 60.0 as hour,
        isodow(seg_events.ts) >= 6 as is_weekend,
    from seg_events
),

final as (
    select
        timed.user_id,
        avg(case when timed.hour < 4 then 1.0 else 0.0 end) as share_night,
        avg(case when timed.hour >= 4 and timed.hour < 8 then 1.0 else 0.0 end) as share_early,
        avg(case when timed.hour >= 8 and timed.hour < 12 then 1.0 else 0.0 end) as share_morning,
        avg(case when timed.hour >= 12 and timed.hour < 16 then 1.0 else 0.0 end) as share_afternoon,
        avg(case when timed.hour >= 16 and timed.hour < 20 then 1.0 else 0.0 end) as share_evening,
        avg(case when timed.hour >= 20 then 1.0 else 0.0 end) as share_late,
        avg(case when timed.is_weekend then 1.0 else 0.0 end) as share_weekend,
        avg(sin(2 * pi() * timed.hour / 24)) as hour_sin,
        avg(cos(2 * pi() * timed.hour / 24)) as hour_cos,
    from timed
    group by timed.user_id
)

select * from final
