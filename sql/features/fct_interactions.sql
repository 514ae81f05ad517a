-- The weighted user-item interaction matrix (long form): one row per user and item they touched.
-- Weight per event type (params): $w_view, $w_click, $w_cart, $w_purchase, $w_tag, $w_play, $w_like,
-- $w_share, $w_other; `rate` events weigh their rating. Reads the `seg_events` view (all events, or the
-- training part of them).
with weighted as (
    select
        seg_events.user_id,
        seg_events.item_id,
        seg_events.ts,
        case seg_events.event_type
            when 'view' then $w_view
            when 'click' then $w_click
            when 'search' then $w_click
            when 'add_to_cart' then $w_cart
            when 'purchase' then $w_purchase
            when 'rate' then coalesce(seg_events.value, 1.0)
            when 'tag' then $w_tag
            when 'play' then $w_play * ln(1 + greatest(coalesce(seg_events.value, seg_events.quantity, 1.0), 0))
            when 'like' then $w_like
            when 'share' then $w_share
            when 'remove_from_cart' then 0.0
            when 'return' then 0.0
            else $w_other
        end as weight,
    from seg_events
),

final as (
    select
        weighted.user_id,
        weighted.item_id,
        sum(weighted.weight) as weight,
        count(*) as n_events,
        min(weighted.ts) as first_ts,
        max(weighted.ts) as last_ts,
    from weighted
    group by weighted.user_id, weighted.item_id
)

select * from final
