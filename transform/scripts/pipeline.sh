# shellcheck shell=bash
# Helpers that scripts/demo and scripts/e2e-dbt share to run the dbt package: sourced, with
# $repo (the repository) and $python set by the caller.
#
#   withings_venv DIR NAME LOG      DIR/venv-NAME holds exactly the pins of
#                                   transform/requirements/NAME.txt (made or remade when not;
#                                   reused when it does: the same marker as scripts/e2e's
#                                   ensure_venv). Returns 1, output in LOG, when it cannot.
#   withings_dbt VENV WORK ARGS...  dbt ARGS on the package, with transform/profiles.yml, its
#                                   target/ and logs/ under WORK (not in the repository).
#                                   WITHINGS_DBT_TARGET and the WITHINGS_* variables of
#                                   profiles.yml pick the database.
#   withings_dbt_counts LOG         "PASS=n WARN=n ERROR=n SKIP=n TOTAL=n" of a dbt build log.

withings_venv() {
  local dir=$1/venv-$2 req=$repo/transform/requirements/$2.txt log=$3 spec
  spec=$(grep -v '^[[:space:]]*#' "$req" | sed '/^[[:space:]]*$/d' | sort | paste -sd' ' -)
  if [ -f "$dir/.e2e-spec" ] && [ "$(cat "$dir/.e2e-spec")" = "$spec" ]; then return 0; fi
  rm -rf "$dir"
  {
    "$python" -m venv "$dir" &&
      "$dir/bin/pip" install --quiet --upgrade pip &&
      "$dir/bin/pip" install --quiet -r "$req"
  } >>"$log" 2>&1 || return 1
  echo "$spec" >"$dir/.e2e-spec"
}

withings_dbt() {
  local venv=$1 work=$2
  shift 2
  mkdir -p "$work"
  DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_VERSION_CHECK=false DBT_PROFILES_DIR="$repo/transform" \
    "$venv/bin/dbt" "$@" --project-dir "$repo/transform" --target-path "$work/target" --log-path "$work/logs"
}

withings_dbt_counts() {
  grep -Eo 'PASS=[0-9]+ WARN=[0-9]+ ERROR=[0-9]+ SKIP=[0-9]+( NO-OP=[0-9]+)? TOTAL=[0-9]+' "$1" | tail -n 1
}
