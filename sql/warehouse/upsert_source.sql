-- Remember a source's event types and validation settings, so `segflow validate` checks its events the way
-- ingest did. Unchanged settings leave the row (and updated_at) as it was. Params: $name, $event_types,
-- $validation, $updated_at.
insert into sources values ($name, $event_types, $validation, $updated_at)
on conflict (name) do update set
    event_types = excluded.event_types,
    validation = excluded.validation,
    updated_at = excluded.updated_at
where sources.event_types != excluded.event_types or sources.validation::varchar != excluded.validation::varchar
