-- The devices of each user's latest run (a full-table stream).
with d as ({{ withings_latest_run('devices', ['userid', 'hash_deviceid']) }})
select
  cast(userid as bigint) as userid,
  hash_deviceid,
  deviceid,
  type as device_type,
  model,
  cast(model_id as integer) as model_id,
  battery,
  timezone,
  cast(first_session_date as timestamp) as first_session_at,
  cast(last_session_date as timestamp) as last_session_at
from d
