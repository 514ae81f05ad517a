create table if not exists sources (
    name varchar primary key,
    event_types varchar[] not null,
    validation json not null,
    updated_at timestamp not null,
    location varchar,  -- the --source it was last read from (demo, movielens:DIR, PATH.toml), absolute
);
-- A warehouse made before locations were kept: a run without --source asks which source to read.
alter table sources add column if not exists location varchar;
-- The zone its files' times without a zone were read in (its spec's timezone; null: before zones, so UTC).
alter table sources add column if not exists timezone varchar;
