-- One row per user and sample time; local dates in the user's timezone.
with i as ({{ withings_latest('intraday_activity', ['userid', 'timestamp']) }})
select
  cast(i.userid as bigint) as userid,
  cast(i.timestamp as timestamp) as sampled_at,
  {{ withings_local_date('i.timestamp', 'tz.timezone') }} as local_date,
  cast(i.duration as integer) as duration_s,
  cast(i.steps as bigint) as steps,
  cast(i.distance as double precision) as distance_m,
  cast(i.calories as double precision) as active_kcal,
  cast(i.elevation as double precision) as elevation_floors,
  cast(i.heart_rate as integer) as heart_rate,
  i.deviceid,
  i.model
from i
left join {{ ref('stg_withings__user_timezones') }} as tz on tz.userid = cast(i.userid as bigint)
