# shellcheck shell=bash
# BATCH messages (batch_config) into MeltanoLabs target-postgres: a full RECORD run into one
# schema and a full BATCH run into another, from the same simulator data, give the same tables
# row for row (every column of the streams' schemas; the targets' _sdc_* metadata aside).
# Sourced by scripts/e2e (see README.md here).

say "BATCH messages: meltano run tap-withings target-postgres with batch_config, against a RECORD run"
batch_root=$run/batches
rm -rf "$batch_root"
for schema in withings_record withings_batch; do
  pgq "set client_min_messages = warning; drop schema if exists $schema cascade" >/dev/null
done
# Both runs are full syncs (no state read, none written), so they read the same data.
TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=withings_record \
  run_logged run-postgres-record "$meltano" run --full-refresh --no-state-update tap-withings target-postgres
TAP_WITHINGS_BATCH_CONFIG="{\"encoding\": {\"format\": \"jsonl\", \"compression\": \"gzip\"}, \"storage\": {\"root\": \"file://$batch_root\", \"prefix\": \"e2e-\"}, \"batch_size\": 50}" \
  TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=withings_batch \
  run_logged run-postgres-batch "$meltano" run --full-refresh --no-state-update tap-withings target-postgres

n_files=$(find "$batch_root" -name 'e2e-tap-withings--*.json.gz' | wc -l)
n_partial=$(find "$batch_root" -name '*.partial' | wc -l)
[ "$n_files" -gt 0 ] || fail "the BATCH run wrote no batch file under $batch_root"
[ "$n_partial" -eq 0 ] || fail "the BATCH run left $n_partial unfinished files under $batch_root"
echo "  ok batch run: $n_files finished batch files under $batch_root, none partial" >&2

tables() { pgq "select table_name from information_schema.tables where table_schema = '$1' order by 1" | paste -sd, -; }
record_tables=$(tables withings_record)
batch_tables=$(tables withings_batch)
[ -n "$record_tables" ] || fail "the RECORD run created no table in withings_record"
[ "$record_tables" = "$batch_tables" ] ||
  fail "the BATCH run's tables ($batch_tables) are not the RECORD run's ($record_tables)"
total=0
for table in ${record_tables//,/ }; do
  # The columns of the stream's schema (the target's own _sdc_* columns are filled from RECORD
  # messages only: batch rows carry no time_extracted or table version).
  cols=$(pgq "select string_agg(quote_ident(column_name), ', ' order by column_name) from information_schema.columns
              where table_schema = 'withings_record' and table_name = '$table' and column_name not like '\\_sdc\\_%'")
  counts=$(pgq "select (select count(*) from withings_record.\"$table\") || ' ' || (select count(*) from withings_batch.\"$table\")")
  only_record=$(pgq "select count(*) from (select $cols from withings_record.\"$table\" except all select $cols from withings_batch.\"$table\") d")
  only_batch=$(pgq "select count(*) from (select $cols from withings_batch.\"$table\" except all select $cols from withings_record.\"$table\") d")
  [ "$only_record" = 0 ] && [ "$only_batch" = 0 ] && [ "${counts% *}" = "${counts#* }" ] ||
    fail "$table: the BATCH run differs from the RECORD run (rows $counts; $only_record only in the RECORD run, $only_batch only in the BATCH run)"
  total=$((total + ${counts% *}))
done
[ "$total" -gt 0 ] || fail "the RECORD run loaded no row"
echo "  ok postgres: BATCH run equals the RECORD run row for row ($total rows in $(echo "$record_tables" | tr , '\n' | wc -l) tables)" >&2

# A device removed in Withings, then a second full BATCH run into the same schema: the device
# is soft-deleted through ACTIVATE_VERSION and every other row of the full-table streams is
# live, because their batch files come after ACTIVATE_VERSION (batch rows carry no table
# version; target-postgres marks every row without the new version deleted).
say "BATCH messages: a removed device, then a second BATCH run (ACTIVATE_VERSION before the full-table batches)"
before=$(curl -fsS "$sim_url/_sim/truth?module=getdevice&userid=$first_user") || fail "GET /_sim/truth failed"
mutate "{\"op\":\"delete\",\"module\":\"getdevice\",\"userid\":$first_user,\"count\":1}" >/dev/null
after=$(curl -fsS "$sim_url/_sim/truth?module=getdevice&userid=$first_user") || fail "GET /_sim/truth failed"
removed=$("$python" -c 'import json,sys; a={d["hash_deviceid"] for d in json.loads(sys.argv[1])}; b={d["hash_deviceid"] for d in json.loads(sys.argv[2])}; print(",".join(sorted(a-b)))' "$before" "$after")
[ -n "$removed" ] || fail "the device delete mutation removed no device"
TAP_WITHINGS_BATCH_CONFIG="{\"encoding\": {\"format\": \"jsonl\", \"compression\": \"gzip\"}, \"storage\": {\"root\": \"file://$batch_root\", \"prefix\": \"e2e-2-\"}}" \
  TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=withings_batch \
  run_logged run-postgres-batch-2 "$meltano" run --full-refresh --no-state-update tap-withings target-postgres
deleted_rows=$(pgq "select hash_deviceid from withings_batch.devices where userid = $first_user and _sdc_deleted_at is not null order by 1" | paste -sd, -)
[ "$deleted_rows" = "$removed" ] ||
  fail "second BATCH run: soft-deleted devices of user $first_user [$deleted_rows], expected the removed one [$removed]"
live_devices=$(pgq "select count(*) from withings_batch.devices where userid = $first_user and _sdc_deleted_at is null")
want_live=$("$python" -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$after")
[ "$live_devices" = "$want_live" ] ||
  fail "second BATCH run: $live_devices live devices of user $first_user, expected $want_live"
dead_goals=$(pgq "select count(*) from withings_batch.goals where _sdc_deleted_at is not null")
[ "$dead_goals" = 0 ] || fail "second BATCH run: $dead_goals goals rows marked deleted (their batch came before ACTIVATE_VERSION?)"
echo "  ok postgres: after a second BATCH run the removed device is soft-deleted, the $live_devices others and goals are live" >&2
