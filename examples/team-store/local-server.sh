#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1, for trying the team store on one machine.
#
#   examples/team-store/local-server.sh start [DIR]   # prints the export line for AIGCBENCH_STORE
#   examples/team-store/local-server.sh stop  [DIR]   # stops it (the data stays in DIR)
#   examples/team-store/local-server.sh start [DIR]   # the same server again, records and all
#   examples/team-store/local-server.sh remove [DIR]  # stops it and deletes DIR
#
# DIR defaults to ${TMPDIR:-/tmp}/aigcbench-team-store. PORT (55432), TEAM_USER (bench),
# TEAM_PASSWORD (change-me) and TEAM_DB (bench) may be set in the environment. Only
# 127.0.0.1 listens, with password (scram-sha-256) authentication, as on a team server;
# the Unix socket inside DIR trusts the server's owner (for creating the user).
# Needs the PostgreSQL server programs: Debian/Ubuntu `apt install postgresql`
# (kept in /usr/lib/postgresql/N/bin), Homebrew `brew install postgresql`.
set -euo pipefail

action=${1:-start}
dir=$(realpath -m "${2:-${TMPDIR:-/tmp}/aigcbench-team-store}")
port=${PORT:-55432}
user=${TEAM_USER:-bench}
password=${TEAM_PASSWORD:-change-me}
db=${TEAM_DB:-bench}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
export PATH="$PATH${bin:+:$bin}"
command -v initdb >/dev/null || { echo "local-server.sh: no initdb here: install PostgreSQL's server" >&2; exit 3; }

as_owner=()
if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root: run it as its own user
  as_owner=(runuser -u postgres --)
fi

ctl() { "${as_owner[@]}" pg_ctl -D "$dir/data" -l "$dir/server.log" -w "$@" >/dev/null; }

case $action in
  start)
    mkdir -p "$dir" && chmod 700 "$dir"
    [ ${#as_owner[@]} -eq 0 ] || chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${as_owner[@]}" initdb -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    fi
    if ! "${as_owner[@]}" pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
      ctl start -o "-k $dir -p $port -c listen_addresses=127.0.0.1"
    fi
    # The user and its database, unless an earlier start made them.
    psql=("${as_owner[@]}" psql -qtA -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" ]; then
      "${psql[@]}" -c "CREATE ROLE \"$user\" LOGIN PASSWORD '$password'"
    fi
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      "${psql[@]}" -c "CREATE DATABASE \"$db\" OWNER \"$user\""
    fi
    echo "PostgreSQL is listening on 127.0.0.1:$port (data in $dir). Point aigcbench at it:"
    echo "  export AIGCBENCH_STORE=postgresql://$user:$password@127.0.0.1:$port/$db"
    ;;
  stop)
    ctl -m fast stop
    echo "stopped the server in $dir"
    ;;
  remove)
    if [ -f "$dir/data/postmaster.pid" ]; then ctl -m fast stop; fi
    rm -rf "$dir"
    echo "removed $dir"
    ;;
  *)
    echo "usage: $0 start|stop|remove [DIR]" >&2
    exit 2
    ;;
esac
