-- Every user's segments over time: one row per spell in a segment of a run (valid_to null while current).
-- A full publish opens a new spell for every user (segment ids are a run's own); scoring new events opens one
-- only when a user's segment changes.
create table if not exists user_segment_history (
    user_id varchar not null,
    segment_id integer not null,
    run_id varchar not null,
    valid_from timestamp not null,
    valid_to timestamp,
)
