-- Published: the micro-segments (for recommenders): size, the people-level segment most of their members
-- are in, and their top categories.
create table if not exists micro_segments (
    micro_segment_id integer not null,
    size bigint not null,
    segment_id integer,
    top_categories varchar[],
    run_id varchar not null,
)
