-- One row per ECG recording with its AFib result and its waveform's metadata.
select
  r.userid,
  r.signalid,
  r.recorded_at,
  r.device_model,
  r.afib,
  r.afib_result,
  r.heart_rate,
  r.systolic_mmhg,
  r.diastolic_mmhg,
  s.sampling_frequency_hz,
  s.wearposition
from {{ ref('stg_withings__ecg_recordings') }} as r
left join {{ ref('stg_withings__ecg_signals') }} as s on s.userid = r.userid and s.signalid = r.signalid
