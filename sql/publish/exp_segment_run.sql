-- The run's own segment_runs row, exported with its tables so a reader needs no warehouse to say how the
-- run was made. Params: the run's columns; metrics as JSON text.
with final as (
    select
        $run_id::varchar as run_id,
        $created_at::timestamp as created_at,
        $source::varchar as source,
        $embedding::varchar as embedding,
        $clusterer::varchar as clusterer,
        $k::integer as k,
        $metrics::json as metrics,
        $mlflow_run_id::varchar as mlflow_run_id,
        true as is_current,
)

select * from final
