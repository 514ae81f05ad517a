-- Published: the segment of every user with events, and the distance to the segment's centroid.
create table if not exists user_segments (
    user_id varchar not null,
    segment_id integer not null,
    run_id varchar not null,
    distance double,
    assigned_at timestamp not null,
)
