-- Published: each micro-segment's top items; score = share of its members who interacted with the item.
create table if not exists micro_segment_recommendations (
    micro_segment_id integer not null,
    rank bigint not null,
    item_id varchar not null,
    score double not null,
    run_id varchar not null,
)
