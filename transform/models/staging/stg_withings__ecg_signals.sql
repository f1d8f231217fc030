-- The waveform's metadata (the samples stay in the source's `signal` column).
with e as ({{ withings_latest('ecg_signals', ['userid', 'signalid']) }})
select
  cast(userid as bigint) as userid,
  cast(signalid as bigint) as signalid,
  cast(sampling_frequency as integer) as sampling_frequency_hz,
  cast(wearposition as integer) as wearposition,
  cast(heart_rate as integer) as heart_rate,
  cast("timestamp" as timestamp) as recorded_at
from e
