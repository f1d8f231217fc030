-- One row per user and local day with a weigh-in: the day's mean of each value.
select
  userid,
  local_date,
  count(*) as weigh_ins,
  avg(weight_kg) as weight_kg,
  avg(fat_ratio_pct) as fat_ratio_pct,
  avg(fat_mass_kg) as fat_mass_kg,
  avg(fat_free_mass_kg) as fat_free_mass_kg,
  avg(muscle_mass_kg) as muscle_mass_kg,
  avg(bone_mass_kg) as bone_mass_kg,
  avg(hydration_kg) as hydration_kg
from {{ ref('fct_body_composition') }}
group by userid, local_date
