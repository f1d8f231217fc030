-- One row per user and weigh-in (measure group): the body composition types side by side.
-- Segmental types (173-175, one value per body position) are left to stg_withings__measures.
select
  userid,
  grpid,
  min(measured_at) as measured_at,
  min(local_date) as local_date,
  max(case when measure_type = 1 then value end) as weight_kg,
  max(case when measure_type = 6 then value end) as fat_ratio_pct,
  max(case when measure_type = 8 then value end) as fat_mass_kg,
  max(case when measure_type = 5 then value end) as fat_free_mass_kg,
  max(case when measure_type = 76 then value end) as muscle_mass_kg,
  max(case when measure_type = 88 then value end) as bone_mass_kg,
  max(case when measure_type = 77 then value end) as hydration_kg,
  max(case when measure_type = 170 then value end) as visceral_fat_index,
  max(case when measure_type = 226 then value end) as basal_metabolic_rate_kcal,
  min(deviceid) as deviceid
from {{ ref('stg_withings__measures') }}
where category = 1 and measure_type in (1, 5, 6, 8, 76, 77, 88, 170, 226) and position = -1
group by userid, grpid
