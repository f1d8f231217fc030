-- Each user's timezone: the latest one a reply named (measures, activity, sleep, workouts),
-- UTC when none did. Streams without a timezone of their own (intraday_activity) use it.
with named as (
  select cast(userid as bigint) as userid, timezone, cast(modified as timestamp) as at
  from {{ source('withings', 'measures') }} where timezone is not null
  union all
  select cast(userid as bigint), timezone, cast(modified as timestamp)
  from {{ source('withings', 'activity') }} where timezone is not null
  union all
  select cast(userid as bigint), timezone, cast(enddate as timestamp)
  from {{ source('withings', 'sleep_summaries') }} where timezone is not null
), ranked as (
  select userid, timezone, row_number() over (partition by userid order by at desc nulls last, timezone) as rn
  from named
)
select userid, timezone from ranked where rn = 1
