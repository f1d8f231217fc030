# shellcheck shell=bash
# Stream maps (issue 15): one Meltano run with stream_maps set through Meltano's own
# settings (TAP_WITHINGS_STREAM_MAPS, TAP_WITHINGS_STREAM_MAP_CONFIG, as `meltano config set`
# would store them): userid hashed with a salt, devices.mac_address dropped, measures filtered
# to weights and sent as `weights` with a computed column, goals dropped. Into target-jsonl and
# target-postgres (schema withings_maps), then checks what landed: tables, columns, rows.
say "stream maps: hashed userid, no devices.mac_address, measures as weights, no goals (jsonl, postgres)"
maps_salt=e2e-maps-salt
maps_jsonl=$project/output/jsonl-maps
(
  export TAP_WITHINGS_STREAM_MAPS='{
    "devices": {"mac_address": null, "userid": "md5(config[\"salt\"] + str(userid))"},
    "measures": {"__alias__": "weights", "__filter__": "type == 1", "kg": "float(value)"},
    "goals": null
  }'
  export TAP_WITHINGS_STREAM_MAP_CONFIG="{\"salt\": \"$maps_salt\"}"
  # Every property of the three streams (the project's select excludes devices.mac_address:
  # here the map must be what drops it).
  export TAP_WITHINGS__SELECT='["devices.*", "measures.*", "goals.*"]'
  export TARGET_JSONL_DESTINATION_PATH=$maps_jsonl TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=withings_maps
  run_logged run-maps-jsonl "$meltano" run --full-refresh tap-withings target-jsonl
  run_logged run-maps-postgres "$meltano" run --full-refresh tap-withings target-postgres
)
"$python" - "$maps_jsonl" "$maps_salt" "$userids" "$pg_port" <<'EOF' || fail "the stream-mapped run did not load what the maps say"
import hashlib, json, os, subprocess, sys
jsonl, salt, userids, port = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
hashes = {hashlib.md5((salt + u).encode()).hexdigest() for u in userids}
bad = []
def records(name):
    path = os.path.join(jsonl, f"{name}.jsonl")
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else None
files = sorted(f[:-6] for f in os.listdir(jsonl)) if os.path.isdir(jsonl) else []
if files != ["devices", "weights"]:
    bad.append(f"jsonl files {files}, expected devices and weights only")
devices, weights = records("devices") or [], records("weights") or []
if not devices or any("mac_address" in r or r["userid"] not in hashes for r in devices):
    bad.append(f"jsonl devices: {len(devices)} records, some with mac_address or an unhashed userid: {devices[:1]}")
if not weights or any(r["type"] != 1 or r["kg"] != r["value"] for r in weights):
    bad.append(f"jsonl weights: {len(weights)} records, some not type 1 or kg != value: {weights[:1]}")
def pg(sql):
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", port,
                           "-U", "postgres", "-d", "withings", "-c", sql],
                          capture_output=True, text=True, check=True).stdout.split()
tables = sorted(t for t in pg("select table_name from information_schema.tables where table_schema = 'withings_maps'")
                if not t.startswith("_"))
if tables != ["devices", "weights"]:
    bad.append(f"postgres tables {tables}, expected devices and weights only")
columns = set(pg("select column_name from information_schema.columns where table_schema = 'withings_maps' and table_name = 'devices'"))
if "mac_address" in columns or "userid" not in columns:
    bad.append(f"postgres devices columns {sorted(columns)}: mac_address present or userid missing")
pg_users = set(pg("select distinct userid from withings_maps.devices"))
if pg_users != hashes & pg_users or not pg_users:
    bad.append(f"postgres devices userids {sorted(pg_users)}, expected the salted md5 of {userids}")
n_pg = int(pg("select count(*) from withings_maps.weights")[0])
n_other = int(pg("select count(*) from withings_maps.weights where type <> 1 or kg is distinct from value")[0])
if n_pg != len(weights) or n_other:
    bad.append(f"postgres weights: {n_pg} rows ({n_other} not type 1 or kg != value), jsonl has {len(weights)}")
for b in bad:
    print(f"  FAIL stream maps: {b}", file=sys.stderr)
if not bad:
    print(f"  ok stream maps: jsonl and postgres hold devices ({len(devices)} rows, userid hashed, no mac_address) "
          f"and weights ({len(weights)} rows of type 1 with kg), no goals, no measures", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
