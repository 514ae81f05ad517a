-- Memberships (given as two parallel lists) with what the published micro-segments say about themselves:
-- size, the segment most of their members are in, top categories; heaviest first. Params: $micro_segments
-- (a Parquet path), $micro_ids, $weights.
with memberships as (
    select
        unnest($micro_ids::integer []) as micro_segment_id,
        unnest($weights::double []) as weight,
),

final as (
    select
        memberships.micro_segment_id,
        memberships.weight,
        micro.size,
        micro.segment_id,
        micro.top_categories,
    from memberships
    left join read_parquet($micro_segments) as micro on micro.micro_segment_id = memberships.micro_segment_id
)

select * from final order by final.weight desc, final.micro_segment_id
