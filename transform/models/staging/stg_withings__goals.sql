-- Each user's goals from the latest run (a full-table stream); the weight goal in kg.
with g as ({{ withings_latest_run('goals', ['userid']) }})
select
  cast(userid as bigint) as userid,
  cast(steps as bigint) as steps_goal,
  cast(sleep as double precision) / 3600.0 as sleep_goal_hours,
  cast(weight__value as double precision) * power(10.0, cast(weight__unit as double precision)) as weight_goal_kg
from g
