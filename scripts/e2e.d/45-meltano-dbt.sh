# shellcheck shell=bash
# The dbt package through Meltano: the `dbt-postgres` utility of meltano/meltano.yml (Meltano's
# dbt extension with the pins of transform/requirements/dbt-postgres.txt), installed by
# `meltano install` and run in the pipeline the README gives, `meltano run tap-withings
# target-postgres dbt-postgres:build`: an incremental sync (this job's state, from the runs
# above) into the `withings` schema target-postgres loaded, then dbt on it. Its committed
# project_dir and profiles_dir are $MELTANO_PROJECT_ROOT/../transform: this copy of the project
# lives in $E2E_DIR/project, so the package is copied to $E2E_DIR/transform (why a copy:
# scripts/lib/meltano-dbt.sh, the steps this part shares with 46) and the committed values are
# used as they are. Only the port (this run's PostgreSQL) and the schema (one of its own, so
# the models checked are the ones this build made) are set here, by `meltano config`.
# The marts are compared row for row with the ones 40-dbt.sh built with plain dbt on this
# schema, so the sync must leave the data they read as it was: since this job's last run the
# simulator changed only devices (30-batch.sh removed one), which the marts do not read, and
# the sync sends nothing new but the full-table devices and goals; checked here.
say "meltano run tap-withings target-postgres dbt-postgres:build (the dbt package as the project of Meltano's dbt extension)"
# shellcheck source=../lib/meltano-dbt.sh
. "$repo/scripts/lib/meltano-dbt.sh"
meltano_dbt_copy_package
meltano_dbt_install dbt-postgres
dbt_schema=analytics_meltano
run_logged config-dbt-postgres "$meltano" config set dbt-postgres port "$pg_port"
run_logged config-dbt-postgres "$meltano" config set dbt-postgres schema "$dbt_schema"
pgq "set client_min_messages = warning; drop schema if exists ${dbt_schema}_staging cascade; drop schema if exists ${dbt_schema}_marts cascade" >/dev/null
# A fingerprint of the live rows of every table the sync may write, but its metadata columns
# (_sdc_*: the batch, the time), per table; devices and goals, full-table streams that the marts
# do not read, are re-sent as a new table version by every run and left out.
fingerprint() {
  local t cols
  for t in $(pgq "select table_name from information_schema.tables where table_schema = 'withings'
                  and table_name not in ('devices', 'goals') order by 1"); do
    cols=$(pgq "select string_agg(quote_ident(column_name), ', ' order by column_name) from information_schema.columns
                where table_schema = 'withings' and table_name = '$t' and column_name not like '\_sdc\_%'")
    pgq "select '$t ' || count(*) || ' ' || coalesce(md5(string_agg(r, '|' order by r)), '-')
         from (select row($cols)::text r from withings.\"$t\" where _sdc_deleted_at is null) x"
  done
}
fingerprint >"$run/withings-before-dbt-postgres.txt"
DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_VERSION_CHECK=false \
  run_logged run-dbt-postgres "$meltano" run tap-withings target-postgres dbt-postgres:build
fingerprint >"$run/withings-after-dbt-postgres.txt"
if ! diff "$run/withings-before-dbt-postgres.txt" "$run/withings-after-dbt-postgres.txt" >"$run/withings-dbt-postgres.diff"; then
  cat "$run/withings-dbt-postgres.diff" >&2
  fail "the sync of meltano run tap-withings target-postgres dbt-postgres:build changed the data 40-dbt.sh's marts were built on"
fi
echo "  ok meltano run tap-withings target-postgres: the live rows the marts read are unchanged ($(wc -l <"$run/withings-after-dbt-postgres.txt") tables)" >&2
meltano_dbt_check_build dbt-postgres "$run/run-dbt-postgres.log"
# Rows per user in a mart, and every mart equal row for row to the one scripts/e2e-dbt (40-dbt.sh)
# built with dbt on its own on the same data (schema analytics).
for u in ${userids//,/ }; do
  n=$(pgq "select count(*) from ${dbt_schema}_marts.fct_body_composition_daily where userid = $u")
  [ "$n" -gt 0 ] || fail "${dbt_schema}_marts.fct_body_composition_daily has no row for user $u"
  echo "  ok dbt-postgres marts for user $u: $n days in fct_body_composition_daily" >&2
done
marts=$(pgq "select table_name from information_schema.tables where table_schema = '${dbt_schema}_marts' order by 1")
[ -n "$marts" ] || fail "no table in ${dbt_schema}_marts"
for m in $marts; do
  # Rows as text: a json column has no equality operator for EXCEPT.
  d=$(pgq "with a as (select t::text r from ${dbt_schema}_marts.$m t), b as (select t::text r from analytics_marts.$m t)
           select (select count(*) from (select r from a except all select r from b) x)
                + (select count(*) from (select r from b except all select r from a) y)") ||
    fail "cannot compare ${dbt_schema}_marts.$m with analytics_marts.$m (built by 40-dbt.sh)"
  [ "$d" -eq 0 ] || fail "${dbt_schema}_marts.$m differs from analytics_marts.$m in $d rows"
done
echo "  ok dbt-postgres marts equal row for row to dbt's own build on the same data: $(echo "$marts" | paste -sd' ' -)" >&2
