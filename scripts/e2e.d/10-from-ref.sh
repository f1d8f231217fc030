# shellcheck shell=bash
# Part of scripts/e2e (sourced in the Meltano project): the README's way of adding the tap to
# another project, from the Hub-style definition meltano/extractors/tap-withings.yml, run as
# the README writes it (the shell block after its `e2e: scripts/e2e.d/10-from-ref.sh` marker,
# /path/to/tap-withings being this checkout) in a fresh `meltano init` project; then a target
# added from a definition file too (no Meltano Hub here), a `meltano run` and the SDK's
# `--test=schema` through Meltano.
say "README: meltano add --from-ref in a fresh meltano init project, then meltano run"
fresh_parent=$run/from-ref-fresh
rm -rf "$fresh_parent"
mkdir -p "$fresh_parent"
"$python" - "$repo/README.md" "$repo" >"$run/from-ref-commands.sh" <<'PY' || fail "README.md has no shell block after its e2e: scripts/e2e.d/10-from-ref.sh marker"
import re, sys
text, repo = open(sys.argv[1]).read(), sys.argv[2]
m = re.search(r"<!-- e2e: scripts/e2e\.d/10-from-ref\.sh[^>]*-->\s*```sh\n(.*?)```", text, re.S)
if not m:
    sys.exit(1)
print("set -ex")
print(m.group(1).replace("/path/to/tap-withings", repo))
PY
# The commands run with `meltano` on the PATH, as a user's shell has it; the wheel's cargo
# profile as for the example project (a plain install builds a release wheel).
(cd "$fresh_parent" && PATH=$E2E_DIR/venv-meltano/bin:$PATH MATURIN_PEP517_ARGS="--profile $wheel_profile" \
  bash "$run/from-ref-commands.sh") >"$run/logs/from-ref-readme.log" 2>&1 || {
  tail -n 40 "$run/logs/from-ref-readme.log" >&2
  fail "the README's --from-ref commands failed in a fresh project (log: $run/logs/from-ref-readme.log)"
}
fresh=$(find "$fresh_parent" -mindepth 2 -maxdepth 2 -name meltano.yml -printf '%h\n' | head -1)
[ -n "$fresh" ] || fail "the README's commands made no Meltano project under $fresh_parent"
echo "  ok README: meltano init + meltano add --from-ref exited 0 ($(basename "$fresh"))" >&2
cd "$fresh"
"$E2E_DIR/venv-meltano/bin/python" - meltano.yml <<'PY' || fail "the fresh project's meltano.yml is not one tap-withings extractor"
import sys, yaml
plugins = yaml.safe_load(open(sys.argv[1])).get("plugins", {})
named = [(kind, p["name"]) for kind, ps in plugins.items() for p in ps if p["name"] == "tap-withings"]
if named != [("extractors", "tap-withings")]:
    sys.exit(f"  FAIL tap-withings entries: {named} (one extractor expected, no utility)")
tap = plugins["extractors"][0]
if tap["pip_url"] != "${TAP_WITHINGS_PIP_URL}":
    sys.exit(f"  FAIL pip_url {tap['pip_url']}")
print("  ok meltano.yml: one tap-withings extractor (no utility), pip_url ${TAP_WITHINGS_PIP_URL}", file=sys.stderr)
PY
[ -x .meltano/extractors/tap-withings/venv/bin/tap-withings ] ||
  fail "meltano add did not install tap-withings into the fresh project's venv"
# A loader from a definition file as well (no Hub).
cat >"$run/target-jsonl.yml" <<'YML'
name: target-jsonl
namespace: target_jsonl
variant: andyh1203
pip_url: target-jsonl==0.1.4
settings:
- name: destination_path
  kind: string
- name: do_timestamp_file
  kind: boolean
YML
run_logged from-ref-add-target "$meltano" add --plugin-type loader target-jsonl --from-ref "$run/target-jsonl.yml"
TARGET_JSONL_DESTINATION_PATH=$fresh/output TARGET_JSONL_DO_TIMESTAMP_FILE=false \
  run_logged from-ref-run "$meltano" run tap-withings target-jsonl
check jsonl --catalog "$run/catalog.json" --selected "$selected" --dir "$fresh/output" ||
  fail "the fresh project's target-jsonl output differs from the simulator's ground truth"
# The SDK's --test=schema through Meltano: SCHEMA messages only, one per stream.
"$meltano" invoke tap-withings --test=schema >"$run/test-schema.jsonl" 2>"$run/logs/test-schema.log" ||
  fail "meltano invoke tap-withings --test=schema failed: $(tail -5 "$run/logs/test-schema.log")"
"$python" - "$run/test-schema.jsonl" "$known" <<'PY' || fail "--test=schema did not print one SCHEMA per stream and nothing else"
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
streams = sorted(m["stream"] for m in msgs if m["type"] == "SCHEMA")
if any(m["type"] != "SCHEMA" for m in msgs) or streams != sys.argv[2].split(","):
    sys.exit(f"  FAIL {[m['type'] for m in msgs][:5]}... streams {streams}")
print(f"  ok meltano invoke tap-withings --test=schema: {len(streams)} SCHEMA messages, nothing else", file=sys.stderr)
PY
cd "$project"
