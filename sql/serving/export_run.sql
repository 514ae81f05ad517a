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
    from read_parquet($segment_runs) as runs
)

select * from final
