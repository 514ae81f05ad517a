-- Published: each user's nearest micro-segments with weights summing to 1 (blend their lists by weight).
create table if not exists user_memberships (
    user_id varchar not null,
    micro_segment_id integer not null,
    weight double not null,
    run_id varchar not null,
)
