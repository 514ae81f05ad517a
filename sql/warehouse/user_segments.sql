-- Published: the segment of every user with events, the distance to the segment's centroid, and how the user
-- was placed (tasks/segment/reach.py): centre (the nearest), taste (beyond the segments' reach with few events:
-- the segment whose users' items are nearest to theirs), far (beyond it, kept at the nearest centre) or none
-- (segment -1). Null for users published before placed_by was kept.
create table if not exists user_segments (
    user_id varchar not null,
    segment_id integer not null,
    run_id varchar not null,
    distance double,
    assigned_at timestamp not null,
    placed_by varchar,
);

alter table user_segments add column if not exists placed_by varchar;
