with w as ({{ withings_latest('workouts', ['userid', 'id']) }})
select
  cast(userid as bigint) as userid,
  cast(id as bigint) as workout_id,
  cast(category as integer) as category,
  cast("date" as date) as local_date,
  timezone,
  cast(startdate as timestamp) as started_at,
  cast(enddate as timestamp) as ended_at,
  {{ withings_seconds_between('startdate', 'enddate') }} / 60.0 as duration_minutes,
  cast(data__calories as double precision) as active_kcal,
  cast(data__distance as double precision) as distance_m,
  cast(data__steps as bigint) as steps,
  cast(data__hr_average as integer) as hr_average,
  cast(data__hr_max as integer) as hr_max,
  cast(data__intensity as integer) as intensity,
  cast(attrib as integer) as attrib,
  deviceid,
  cast(modified as timestamp) as modified_at
from w
