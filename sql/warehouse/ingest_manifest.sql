create table if not exists ingest_manifest (
    batch_id varchar not null,
    source varchar not null,
    file varchar not null,
    kind varchar not null,
    sha256 varchar not null,
    rows_read bigint not null,
    rows_inserted bigint not null,
    rows_duplicate bigint not null,
    rows_quarantined bigint not null,
    status varchar not null,
    message varchar,
    ingested_at timestamp not null,
)
