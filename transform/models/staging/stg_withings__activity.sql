-- One row per user and local day (getactivity's own `date`, in the user's timezone).
with a as ({{ withings_latest('activity', ['userid', 'date']) }})
select
  cast(userid as bigint) as userid,
  cast("date" as date) as local_date,
  timezone,
  cast(steps as bigint) as steps,
  cast(distance as double precision) as distance_m,
  cast(elevation as double precision) as elevation_floors,
  cast(calories as double precision) as active_kcal,
  cast(totalcalories as double precision) as total_kcal,
  cast(soft as double precision) / 3600.0 as soft_hours,
  cast(moderate as double precision) / 3600.0 as moderate_hours,
  cast(intense as double precision) / 3600.0 as intense_hours,
  cast(active as double precision) / 3600.0 as active_hours,
  cast(hr_average as integer) as hr_average,
  cast(hr_min as integer) as hr_min,
  cast(hr_max as integer) as hr_max,
  cast(modified as timestamp) as modified_at
from a
