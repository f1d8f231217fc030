-- One row per sleep segment (userid, startdate, device), its state named.
with s as ({{ withings_latest('sleep_series', ['userid', 'startdate', 'device']) }})
select
  cast(userid as bigint) as userid,
  device,
  cast(startdate as timestamp) as started_at,
  cast(enddate as timestamp) as ended_at,
  {{ withings_seconds_between('startdate', 'enddate') }} as duration_s,
  cast(state as integer) as state,
  case cast(state as integer)
    when 0 then 'awake' when 1 then 'light' when 2 then 'deep' when 3 then 'rem'
    when 4 then 'manual' when 5 then 'unspecified' when 15 then 'out_of_bed'
    else 'unknown' end as state_name,
  hash_deviceid,
  model
from s
