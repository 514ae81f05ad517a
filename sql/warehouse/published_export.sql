-- The export folder (exports/<folder>) that holds what the published tables hold: written in the same
-- transaction as they are, so a writer that finds exports/current pointing elsewhere (a crash between the
-- commit and the switch) points it here before anything else. One row.
create table if not exists published_export (
    folder varchar not null,
    published_at timestamp not null,
)
