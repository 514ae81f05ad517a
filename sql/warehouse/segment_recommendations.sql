-- Published: each segment's top items (segment -1 is the global list); score = share of members who
-- interacted with the item.
create table if not exists segment_recommendations (
    segment_id integer not null,
    rank bigint not null,
    item_id varchar not null,
    score double not null,
    run_id varchar not null,
)
