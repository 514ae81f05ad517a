create table if not exists quarantine (
    source varchar not null,
    file varchar not null,
    row_number bigint not null,
    reason varchar not null,
    record varchar,
    batch_id varchar not null,
    quarantined_at timestamp not null,
)
