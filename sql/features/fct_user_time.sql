-- Per user: when they are active, by the users' clock (seg_events.local_ts: the time in the run's time zone).
-- Shares of events in six four-hour day parts, the weekend share, and the mean hour as a point on the clock
-- (sin, cos), so 23:00 and 01:00 are close. Shares average 1/0 integers: a decimal literal would make them
-- decimals in Spark.
with timed as (
    select
        seg_events.user_id,
        hour(seg_events.local_ts) + minute(seg_events.local_ts) / 60 as hour,
        -- days since Monday 1900-01-01, mod 7: 5 and 6 are Saturday and Sunday (isodow has no Spark twin)
        ((date_diff('day', date '1900-01-01', cast(seg_events.local_ts as date)) % 7) + 7) % 7 >= 5
            as is_weekend,
    from seg_events
),

final as (
    select
        timed.user_id,
        avg(case when timed.hour < 4 then 1 else 0 end) as share_night,
        avg(case when timed.hour >= 4 and timed.hour < 8 then 1 else 0 end) as share_early,
        avg(case when timed.hour >= 8 and timed.hour < 12 then 1 else 0 end) as share_morning,
        avg(case when timed.hour >= 12 and timed.hour < 16 then 1 else 0 end) as share_afternoon,
        avg(case when timed.hour >= 16 and timed.hour < 20 then 1 else 0 end) as share_evening,
        avg(case when timed.hour >= 20 then 1 else 0 end) as share_late,
        avg(case when timed.is_weekend then 1 else 0 end) as share_weekend,
        avg(sin(2 * pi() * timed.hour / 24)) as hour_sin,
        avg(cos(2 * pi() * timed.hour / 24)) as hour_cos,
    from timed
    group by timed.user_id
)

select * from final
