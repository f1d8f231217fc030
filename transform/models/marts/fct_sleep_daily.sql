-- One row per user and night (night_date, the local day the night ends on): the summary of
-- the preferred source when several devices recorded the night (a sleep monitor, model 32,
-- before a tracker, 16; then the longest time in bed), with how many sources recorded it.
with ranked as (
  select n.*,
    count(*) over (partition by userid, night_date) as sources,
    row_number() over (
      partition by userid, night_date
      order by case source_model when 32 then 0 when 16 then 1 else 2 end,
               time_in_bed_hours desc nulls last, sleep_id
    ) as _rank
  from {{ ref('fct_sleep_nightly') }} as n
)
select
  userid,
  night_date,
  sleep_id,
  source_model,
  sources,
  in_bed_local,
  out_of_bed_local,
  time_in_bed_hours,
  total_sleep_hours,
  light_sleep_hours,
  deep_sleep_hours,
  rem_sleep_hours,
  awake_hours,
  sleep_score,
  sleep_efficiency,
  wakeup_count,
  hr_average,
  series_awake_hours,
  series_light_hours,
  series_deep_hours,
  series_rem_hours,
  segments
from ranked
where _rank = 1
