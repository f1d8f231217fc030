# shellcheck shell=bash
# The dbt package through Meltano on DuckDB: the `dbt-duckdb` utility of meltano/meltano.yml
# (Meltano's dbt extension with the pins of transform/requirements/dbt-duckdb.txt, duckdb the
# version target-duckdb writes), installed by `meltano install`, in the pipeline the README
# gives: `meltano run tap-withings target-duckdb dbt-duckdb:build`, a sync from the simulator
# into the DuckDB file and then dbt in that file. The run is a --full-refresh into a new file
# (15-duckdb.sh left this job's state): the file then holds the simulator's truth, which the
# marts are compared with. The package is $E2E_DIR/transform, the copy of 45-meltano-dbt.sh
# (made again here), reached by the committed project_dir and profiles_dir; `path` keeps its
# committed default (target-duckdb's file), only `schema` is set, so the models checked are
# the ones this build made.
say "meltano run tap-withings target-duckdb dbt-duckdb:build (the dbt package on DuckDB through Meltano)"
# shellcheck source=../lib/meltano-dbt.sh
. "$repo/scripts/lib/meltano-dbt.sh"
meltano_dbt_copy_package
meltano_dbt_install dbt-duckdb
dbt_duckdb_venv=$meltano_dbt_venv
dbt_duckdb_schema=analytics_meltano
run_logged config-dbt-duckdb "$meltano" config set dbt-duckdb schema "$dbt_duckdb_schema"
duckdb_file=$project/output/withings.duckdb
rm -f "$duckdb_file"
DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_VERSION_CHECK=false \
  run_logged run-dbt-duckdb "$meltano" run --full-refresh tap-withings target-duckdb dbt-duckdb:build
[ -s "$duckdb_file" ] || fail "meltano run did not write $duckdb_file (dbt-duckdb's default path)"
meltano_dbt_check_build dbt-duckdb "$run/run-dbt-duckdb.log"
# Rows per user, then every mart against the simulator's truth (check_marts.py: weigh-ins,
# nights, stage hours, daily steps, every user in every mart the simulator fills).
"$dbt_duckdb_venv/bin/python" - "$duckdb_file" "${dbt_duckdb_schema}_marts" "$userids" <<'EOF' || fail "the dbt-duckdb marts lack a user"
import sys
import duckdb
path, schema, userids = sys.argv[1], sys.argv[2], [int(u) for u in sys.argv[3].split(",")]
con = duckdb.connect(path, read_only=True)
(db,) = con.execute("select current_database()").fetchone()
bad = 0
for u in userids:
    (n,) = con.execute(f'select count(*) from "{db}"."{schema}".fct_body_composition_daily where userid = ?', [u]).fetchone()
    if n == 0:
        bad += 1
        print(f"  FAIL {schema}.fct_body_composition_daily has no row for user {u}", file=sys.stderr)
    else:
        print(f"  ok dbt-duckdb marts for user {u}: {n} days in fct_body_composition_daily", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
run_logged dump-dbt-duckdb "$dbt_duckdb_venv/bin/python" "$repo/transform/scripts/check_marts.py" dump \
  --duckdb "$duckdb_file" --schema "${dbt_duckdb_schema}_marts" "$run/marts-meltano-duckdb.json"
"$python" "$repo/transform/scripts/check_marts.py" compare "$run/marts-meltano-duckdb.json" \
  --sim "$sim_url" --userids "$userids" 2>"$run/check-marts-meltano-duckdb.log" || {
  cat "$run/check-marts-meltano-duckdb.log" >&2
  fail "the dbt-duckdb marts differ from the simulator's truth"
}
echo "  ok dbt-duckdb marts against the simulator's truth: $(sed -e 's/^check_marts: ok: //' \
  -e 's/^1 engine(s) agree row for row (\(.*\)); /rows: \1; /' "$run/check-marts-meltano-duckdb.log")" >&2
