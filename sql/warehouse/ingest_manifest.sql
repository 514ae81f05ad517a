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
    rows_filtered bigint default 0,  -- by the feed's `where`; last, as warehouses before it add it
    rows_unnested bigint default 0,  -- added by the feed's `unnest`: rows_read + rows_unnested = the rest
);
-- A warehouse made before row filters: its files filtered nothing.
alter table ingest_manifest add column if not exists rows_filtered bigint default 0;
-- A warehouse made before unnest: its files made one row of each record.
alter table ingest_manifest add column if not exists rows_unnested bigint default 0;
