create table if not exists validation_runs (
    suite varchar not null,
    batch_id varchar not null,
    success boolean not null,
    n_expectations integer not null,
    n_failed integer not null,
    n_warnings integer not null,
    report_path varchar not null,
    "at" timestamp not null,
)
