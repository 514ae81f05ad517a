create table if not exists events (
    user_id varchar not null,
    item_id varchar not null,
    event_type varchar not null,
    ts timestamp not null,
    value double,
    quantity double,
    session_id varchar,
    event_id varchar,
    item_title varchar,
    item_category varchar,
    source varchar not null,
    batch_id varchar not null,
    ingested_at timestamp not null,
    timezone varchar,  -- the user's clock at the event (an IANA name or +HH:MM), when the source maps one
);
-- A warehouse made before events kept their time zone.
alter table events add column if not exists timezone varchar
