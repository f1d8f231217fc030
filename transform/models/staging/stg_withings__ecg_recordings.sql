with e as ({{ withings_latest('ecg_recordings', ['userid', 'signalid']) }})
select
  cast(userid as bigint) as userid,
  cast(signalid as bigint) as signalid,
  cast("timestamp" as timestamp) as recorded_at,
  cast(model as integer) as device_model,
  deviceid,
  cast(ecg__afib as integer) as afib,
  case cast(ecg__afib as integer) when 0 then 'negative' when 1 then 'positive' when 2 then 'inconclusive'
    else 'unknown' end as afib_result,
  cast(heart_rate as integer) as heart_rate,
  cast(bloodpressure__systole as integer) as systolic_mmhg,
  cast(bloodpressure__diastole as integer) as diastolic_mmhg,
  cast(modified as timestamp) as modified_at
from e
