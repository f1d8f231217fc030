-- One row per night (sleep summary id); durations in hours.
with s as ({{ withings_latest('sleep_summaries', ['userid', 'id']) }})
select
  cast(userid as bigint) as userid,
  cast(id as bigint) as sleep_id,
  cast("date" as date) as night_date,
  timezone,
  cast(startdate as timestamp) as in_bed_at,
  cast(enddate as timestamp) as out_of_bed_at,
  {{ withings_local_time('startdate', 'timezone') }} as in_bed_local,
  {{ withings_local_time('enddate', 'timezone') }} as out_of_bed_local,
  cast(model as integer) as source_model,
  hash_deviceid,
  cast(data__total_timeinbed as double precision) / 3600.0 as time_in_bed_hours,
  cast(data__total_sleep_time as double precision) / 3600.0 as total_sleep_hours,
  cast(data__lightsleepduration as double precision) / 3600.0 as light_sleep_hours,
  cast(data__deepsleepduration as double precision) / 3600.0 as deep_sleep_hours,
  cast(data__remsleepduration as double precision) / 3600.0 as rem_sleep_hours,
  cast(data__wakeupduration as double precision) / 3600.0 as awake_hours,
  cast(data__sleep_latency as double precision) / 60.0 as sleep_latency_minutes,
  cast(data__wakeupcount as integer) as wakeup_count,
  cast(data__sleep_efficiency as double precision) as sleep_efficiency,
  cast(data__sleep_score as integer) as sleep_score,
  cast(data__hr_average as integer) as hr_average,
  cast(data__rr_average as integer) as rr_average,
  cast(data__snoring as double precision) / 60.0 as snoring_minutes,
  cast(modified as timestamp) as modified_at
from s
