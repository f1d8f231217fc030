-- One row per user and local day: the daily aggregate beside the totals of the day's
-- intraday samples (local day in the user's timezone).
with intraday as (
  select userid, local_date,
    count(*) as intraday_samples,
    sum(steps) as intraday_steps,
    sum(distance_m) as intraday_distance_m,
    sum(active_kcal) as intraday_active_kcal,
    max(heart_rate) as intraday_hr_max
  from {{ ref('stg_withings__intraday_activity') }}
  group by userid, local_date
), days as (
  select userid, local_date from {{ ref('stg_withings__activity') }}
  union
  select userid, local_date from intraday
)
select
  d.userid,
  d.local_date,
  a.steps,
  a.distance_m,
  a.elevation_floors,
  a.active_kcal,
  a.total_kcal,
  a.active_hours,
  a.hr_average,
  coalesce(i.intraday_samples, 0) as intraday_samples,
  i.intraday_steps,
  i.intraday_distance_m,
  i.intraday_active_kcal,
  i.intraday_hr_max
from days as d
left join {{ ref('stg_withings__activity') }} as a on a.userid = d.userid and a.local_date = d.local_date
left join intraday as i on i.userid = d.userid and i.local_date = d.local_date
