create table if not exists sources (
    name varchar primary key,
    event_types varchar[] not null,
    validation json not null,
    updated_at timestamp not null,
)
