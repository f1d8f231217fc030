select
  userid,
  workout_id,
  category,
  case category when 1 then 'walk' when 2 then 'run' when 3 then 'hiking' when 6 then 'bicycling'
    when 7 then 'swimming' when 16 then 'yoga' else 'other' end as category_name,
  local_date,
  started_at,
  ended_at,
  duration_minutes,
  active_kcal,
  distance_m,
  steps,
  hr_average,
  hr_max
from {{ ref('stg_withings__workouts') }}
