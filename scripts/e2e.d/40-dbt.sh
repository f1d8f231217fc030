# shellcheck shell=bash
# The dbt package (transform/) on DuckDB and on this run's PostgreSQL, with 3 simulated users
# in the simulator's quirk modes, then on the data Meltano loaded into `withings` above (after
# its changes and deletions), and the HTML report in headless Chromium: scripts/e2e-dbt, given
# this run's PostgreSQL and, where Meltano installed it, its target-postgres.
say "dbt package: scripts/e2e-dbt (DuckDB and PostgreSQL, 3 users, quirk modes, report)"
dbt_loader=$project/.meltano/loaders/target-postgres/venv/bin/target-postgres
[ -x "$dbt_loader" ] || dbt_loader=
E2E_DIR=$E2E_DIR E2E_PYTHON=$python DBT_PG_PORT=$pg_port DBT_PG_MELTANO_DB=withings \
  DBT_TARGET_POSTGRES=$dbt_loader "$repo/scripts/e2e-dbt" || fail "scripts/e2e-dbt failed"
