-- Published: each user's ready list, the micro-segment lists blended by membership weight, items the user
-- has interacted with excluded (topped up by popularity; score 0 for those).
create table if not exists user_recommendations (
    user_id varchar not null,
    rank bigint not null,
    item_id varchar not null,
    score double not null,
    run_id varchar not null,
)
