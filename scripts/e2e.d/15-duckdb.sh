# shellcheck shell=bash
# Part of scripts/e2e (sourced in the Meltano project): target-duckdb, the embedded warehouse,
# with the pins of meltano/meltano.yml (target-duckdb 0.8.0 with duckdb 1.2.2: from duckdb 1.3
# on, target-duckdb's COPY takes the first row of every batch for a header and drops it). A
# full run from no state: every stream's table has exactly as many rows as the simulator's
# truth has records (target-duckdb upserts on the key properties).
say "meltano run tap-withings target-duckdb (duckdb pinned): rows per table = the simulator's truth"
duckdb_file=$project/output/withings.duckdb
rm -f "$duckdb_file"
TARGET_DUCKDB_PATH=$duckdb_file run_logged run-duckdb "$meltano" run tap-withings target-duckdb
duckdb_python=$project/.meltano/loaders/target-duckdb/venv/bin/python
[ -x "$duckdb_python" ] || fail "meltano install did not create target-duckdb's venv ($duckdb_python)"
check expected >"$run/expected-counts.json" || fail "e2e_check.py expected failed"
"$duckdb_python" - "$duckdb_file" "$run/expected-counts.json" "$selected" <<'PY' || fail "target-duckdb's tables differ from the simulator's truth"
import json, sys
from importlib.metadata import version
import duckdb
path, expected, selected = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3].split(",")
pins = {p: version(p) for p in ("target-duckdb", "duckdb")}
if pins != {"target-duckdb": "0.8.0", "duckdb": "1.2.2"}:
    sys.exit(f"  FAIL target-duckdb's venv holds {pins}, not the pins of meltano/meltano.yml")
con = duckdb.connect(path, read_only=True)
# The database's own name is the file's stem, "withings" too: name tables in full.
(db,) = con.execute("select current_database()").fetchone()
tables = {t for (t,) in con.execute(
    "select table_name from information_schema.tables where table_catalog = ? and table_schema = 'withings'",
    [db]).fetchall()}
bad = []
for stream in selected:
    want = expected[stream]
    got = con.execute(f'select count(*) from "{db}".withings."{stream}"').fetchone()[0] if stream in tables else None
    if got != want:
        bad.append(f"{stream}: {got} rows, the simulator has {want}")
for b in bad:
    print(f"  FAIL duckdb {b}", file=sys.stderr)
if bad:
    sys.exit(1)
print(f"  ok duckdb ({pins['target-duckdb']}, duckdb {pins['duckdb']}): {len(selected)} tables, rows as the "
      f"simulator's truth ({sum(expected[s] for s in selected)} in all)", file=sys.stderr)
PY
