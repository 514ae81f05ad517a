create table if not exists segment_runs (
    run_id varchar primary key,
    created_at timestamp not null,
    source varchar,
    embedding varchar not null,
    clusterer varchar not null,
    k integer not null,
    metrics json,
    mlflow_run_id varchar,
    is_current boolean not null,
)
