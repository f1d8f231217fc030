-- One row per sleep summary (a night as one device recorded it): the summary's durations in
-- hours and score, and the hours per stage summed from the sleep_series segments of that night
-- (same user and device, inside the in-bed period). A user with a sleep monitor and a tracker
-- has two rows for one night: fct_sleep_daily keeps one.
with stages as (
  select
    s.userid,
    s.sleep_id,
    sum(case when g.state = 0 then g.duration_s end) / 3600.0 as series_awake_hours,
    sum(case when g.state = 1 then g.duration_s end) / 3600.0 as series_light_hours,
    sum(case when g.state = 2 then g.duration_s end) / 3600.0 as series_deep_hours,
    sum(case when g.state = 3 then g.duration_s end) / 3600.0 as series_rem_hours,
    count(g.started_at) as segments
  from {{ ref('stg_withings__sleep_summaries') }} as s
  left join {{ ref('stg_withings__sleep_series') }} as g
    on g.userid = s.userid and g.started_at >= s.in_bed_at and g.started_at < s.out_of_bed_at
    and (g.hash_deviceid = s.hash_deviceid or s.hash_deviceid is null or g.hash_deviceid is null)
  group by s.userid, s.sleep_id
)
select
  s.userid,
  s.sleep_id,
  s.night_date,
  s.source_model,
  s.hash_deviceid,
  s.in_bed_local,
  s.out_of_bed_local,
  s.time_in_bed_hours,
  s.total_sleep_hours,
  s.light_sleep_hours,
  s.deep_sleep_hours,
  s.rem_sleep_hours,
  s.awake_hours,
  s.sleep_score,
  s.sleep_efficiency,
  s.wakeup_count,
  s.hr_average,
  st.series_awake_hours,
  st.series_light_hours,
  st.series_deep_hours,
  st.series_rem_hours,
  coalesce(st.segments, 0) as segments
from {{ ref('stg_withings__sleep_summaries') }} as s
left join stages as st on st.userid = s.userid and st.sleep_id = s.sleep_id
