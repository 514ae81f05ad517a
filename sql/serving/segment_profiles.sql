-- The published segment profiles, one row per segment. Params: $segment_profiles (a Parquet path).
with profiles as (
    select * from read_parquet($segment_profiles)
),

final as (
    select profiles.* from profiles
)

select * from final order by final.segment_id
