# shellcheck shell=bash
# A run with no data for the incremental streams (end_date at start_date: the simulator's data
# begins a day later) still creates every selected stream's table in target-postgres, because
# the tap sends the SCHEMA of every selected stream whether it has records or not (dbt sources
# pointing at them then work on a user's first day). Full-table streams (devices, goals) have
# their rows. Sourced by scripts/e2e (see README.md here).

say "no data: every selected stream's table exists after a run without records for it"
empty_schema=withings_empty
pgq "set client_min_messages = warning; drop schema if exists $empty_schema cascade" >/dev/null
start=$(json_get "$run/sim-config.json" start_date)
TAP_WITHINGS_END_DATE=$start TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=$empty_schema \
  run_logged run-postgres-empty "$meltano" run --full-refresh --no-state-update tap-withings target-postgres
expected_tables=$("$python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import e2e_check; print(",".join(sorted(e2e_check.STREAMS)))' "$repo/scripts")
empty_tables=$(pgq "select table_name from information_schema.tables where table_schema = '$empty_schema' order by 1" | paste -sd, -)
[ "$empty_tables" = "$expected_tables" ] ||
  fail "a run without records: tables [$empty_tables] in $empty_schema, expected every stream's [$expected_tables]"
with_rows=$(for t in ${empty_tables//,/ }; do
  n=$(pgq "select count(*) from $empty_schema.\"$t\"")
  if [ "$n" -gt 0 ]; then echo "$t"; fi
done | paste -sd, -)
[ "$with_rows" = "devices,goals" ] ||
  fail "a run without records: rows in [$with_rows], expected only the full-table streams [devices,goals]"
echo "  ok postgres: a run with no records for 11 streams creates all 13 tables (rows only in devices, goals)" >&2
pgq "set client_min_messages = warning; drop schema $empty_schema cascade" >/dev/null
