-- How a published run was made, from the warehouse's run log (not in the exports). Params: $run_id.
with final as (
    select
        segment_runs.run_id,
        segment_runs.created_at,
        segment_runs.source,
        segment_runs.embedding,
        segment_runs.clusterer,
        segment_runs.k,
    from segment_runs
    where segment_runs.run_id = $run_id
)

select * from final
