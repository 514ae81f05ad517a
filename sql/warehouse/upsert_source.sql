-- Remember a source's event types, validation settings and where it was read from, so `segflow validate` checks
-- its events the way ingest did and a run without --source reads it again. Unchanged settings leave the row (and
-- updated_at) as it was. Params: $name, $event_types, $validation, $updated_at, $location.
insert into sources (name, event_types, validation, updated_at, location)
values ($name, $event_types, $validation, $updated_at, $location)
on conflict (name) do update set
    event_types = excluded.event_types,
    validation = excluded.validation,
    updated_at = excluded.updated_at,
    location = coalesce(excluded.location, sources.location)
where sources.event_types != excluded.event_types
    or sources.validation::varchar != excluded.validation::varchar
    or sources.location is distinct from coalesce(excluded.location, sources.location)
