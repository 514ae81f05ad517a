-- How the published run was made, from the snapshot's own copy of its segment_runs row. Params: $segment_runs
-- (a Parquet path).
with final as (
    select
        runs.run_id,
        runs.created_at,
        runs.source,
        runs.embedding,
        runs.clusterer,
        runs.k,
        -- How the per-user lists were made (0: the micro-segment blend alone; 1: the user's own taste).
        try_cast(json_extract(runs.metrics, '$.personal_weight') as double) as personal_weight,
    from read_parquet($segment_runs) as runs
)

select * from final
