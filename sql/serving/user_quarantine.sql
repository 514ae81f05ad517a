-- The quarantined rows whose raw record contains the user id somewhere (serve.py keeps those that hold it as
-- one of their values). Params: $user.
select quarantine.reason, quarantine.record
from quarantine
where contains(quarantine.record, $user)
