-- The staged events to insert: neither rejected nor duplicates, in file order.
with mapped as (
    select * from stg_events_mapped
),

final as (
    select mapped.*
    from mapped
    anti join stg_events_rejected as rejected on rejected._row = mapped._row
    anti join stg_events_duplicates as duplicates on duplicates._row = mapped._row
)

select * from final
