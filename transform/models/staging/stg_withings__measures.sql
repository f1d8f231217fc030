-- One row per measure (userid, grpid, type, position), its value in the type's physical unit.
with m as ({{ withings_latest('measures', ['userid', 'grpid', 'type', 'position']) }})
select
  cast(m.userid as bigint) as userid,
  cast(m.grpid as bigint) as grpid,
  cast(m.type as integer) as measure_type,
  cast(m.position as integer) as position,
  coalesce(m.type_name, t.type_name, 'type_' || cast(m.type as varchar)) as type_name,
  cast(m.value as double precision) as value,
  coalesce(t.unit_name, 'unknown') as unit_name,
  cast(m.raw_value as bigint) as raw_value,
  cast(m.unit as integer) as power_of_ten,
  cast(m.category as integer) as category,
  cast(m.attrib as integer) as attrib,
  cast(m.date as timestamp) as measured_at,
  {{ withings_local_date('m.date', 'm.timezone') }} as local_date,
  m.timezone,
  cast(m.modified as timestamp) as modified_at,
  m.deviceid,
  m.hash_deviceid,
  m.model
from m
left join {{ ref('withings_measure_types') }} as t on t.measure_type = cast(m.type as integer)
