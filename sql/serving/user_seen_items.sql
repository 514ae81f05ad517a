-- The items a user has interacted with, from the warehouse (the exports hold no events). Params: $user.
with final as (
    select distinct events.item_id from events where events.user_id = $user
)

select * from final
