-- One row per blood pressure reading: systolic (10), diastolic (9) and pulse (11) of one group.
select
  userid,
  grpid,
  min(measured_at) as measured_at,
  min(local_date) as local_date,
  max(case when measure_type = 10 then value end) as systolic_mmhg,
  max(case when measure_type = 9 then value end) as diastolic_mmhg,
  max(case when measure_type = 11 then value end) as pulse_bpm,
  min(deviceid) as deviceid
from {{ ref('stg_withings__measures') }}
where category = 1 and measure_type in (9, 10, 11)
group by userid, grpid
having max(case when measure_type = 10 then 1 end) = 1 or max(case when measure_type = 9 then 1 end) = 1
