-- Close the open spell of every staged user now assigned to another segment, or by another run. Reads
-- seg_user_segments (the staged assignments).
update user_segment_history
set valid_to = assigned.assigned_at
from seg_user_segments as assigned
where
    user_segment_history.user_id = assigned.user_id
    and user_segment_history.valid_to is null
    and (
        user_segment_history.segment_id <> assigned.segment_id
        or user_segment_history.run_id <> assigned.run_id
    )
