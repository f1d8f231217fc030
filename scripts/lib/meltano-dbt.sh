# shellcheck shell=bash
# Shared steps of the e2e parts that run the dbt package through Meltano's dbt extension
# (scripts/e2e.d/45-meltano-dbt.sh on PostgreSQL, 46-meltano-dbt-duckdb.sh on DuckDB). Sourced
# by those parts, inside scripts/e2e (they use its `fail`, `run_logged`, `$repo`, `$E2E_DIR`,
# `$project`, `$meltano` and `$python`).

# Copies transform/ to $E2E_DIR/transform, the place the utilities' committed project_dir and
# profiles_dir ($MELTANO_PROJECT_ROOT/../transform) point to from the e2e's Meltano project. A
# copy, not a symlink: dbt clean, which the extension runs first, refuses a target/ outside a
# project reached through one. dbt's target/ and logs/ stay out of the repository.
meltano_dbt_copy_package() {
  rm -rf "${E2E_DIR:?}/transform"
  mkdir "$E2E_DIR/transform"
  tar -C "$repo/transform" --exclude=./target --exclude=./logs --exclude=./dbt_packages -cf - . |
    tar -C "$E2E_DIR/transform" -xf - || fail "cannot copy transform/ to $E2E_DIR/transform"
}

# `meltano install`s the utility $1 and checks its venv: dbt_invoker is there, and every pin of
# transform/requirements/$1.txt is the version installed. Sets meltano_dbt_venv.
meltano_dbt_install() {
  local utility=$1
  run_logged "install-$utility" "$meltano" install --plugin-type utility "$utility"
  meltano_dbt_venv=$project/.meltano/utilities/$utility/venv
  [ -x "$meltano_dbt_venv/bin/dbt_invoker" ] ||
    fail "meltano install did not put dbt_invoker into $meltano_dbt_venv"
  "$meltano_dbt_venv/bin/python" - "$repo/transform/requirements/$utility.txt" "$utility" <<'PY' ||
import sys
from importlib.metadata import version
pins = [l.split("#")[0].strip() for l in open(sys.argv[1])]
pins = [p for p in pins if p]
wrong = [p for p in pins if version(p.split("==")[0]) != p.split("==")[1]]
if wrong:
    sys.exit(f"  FAIL: {wrong} (installed: {[version(p.split('==')[0]) for p in wrong]})")
print(f"  ok {sys.argv[2]} utility venv: {', '.join(pins)}", file=sys.stderr)
PY
    fail "the $utility utility's venv does not hold the pins of transform/requirements/$utility.txt"
}

# Checks the run_results.json of the `build` the utility $1 just ran in $E2E_DIR/transform:
# models, tests and seeds were built and every node passed. $2: the log to point to.
meltano_dbt_check_build() {
  local utility=$1 log=$2
  "$python" - "$E2E_DIR/transform/target/run_results.json" "$utility" <<'PY' ||
import collections, json, sys
res = json.load(open(sys.argv[1]))
assert res["args"]["which"] == "build", res["args"]["which"]
by = collections.Counter(r["status"] for r in res["results"])
bad = [(r["unique_id"], r["status"]) for r in res["results"] if r["status"] not in ("success", "pass")]
kinds = collections.Counter(r["unique_id"].split(".")[0] for r in res["results"])
if bad or not res["results"] or not {"model", "test", "seed"} <= set(kinds):
    sys.exit(f"  FAIL run_results.json: {dict(by)}, kinds {dict(kinds)}, not passed: {bad[:10]}")
print(f"  ok meltano run ... {sys.argv[2]}:build: {len(res['results'])} nodes ({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))}) all success/pass", file=sys.stderr)
PY
    fail "$utility:build: not every node passed ($log)"
}
