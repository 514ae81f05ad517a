-- Remember a source's event types, validation settings, where it was read from and the zone its times were read
-- in, so `segflow validate` checks its events the way ingest did, a run without --source reads it again and a
-- spec whose zone changed is refused. Unchanged settings leave the row (and updated_at) as it was. Params:
-- $name, $event_types, $validation, $updated_at, $location, $timezone.
insert into sources (name, event_types, validation, updated_at, location, timezone)
values ($name, $event_types, $validation, $updated_at, $location, $timezone)
on conflict (name) do update set
    event_types = excluded.event_types,
    validation = excluded.validation,
    updated_at = excluded.updated_at,
    location = coalesce(excluded.location, sources.location),
    timezone = excluded.timezone
where sources.event_types != excluded.event_types
    or sources.validation::varchar != excluded.validation::varchar
    or sources.location is distinct from coalesce(excluded.location, sources.location)
    or sources.timezone is distinct from excluded.timezone
