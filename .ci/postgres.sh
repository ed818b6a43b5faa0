#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for rail's audit tests and benchmark.
#
#   eval "$(.ci/postgres.sh start)"   # initdb in a temp dir, start on a free local port, create the database
#                                     # and roles, print `export RAIL_TEST_POSTGRES_URL=…` lines
#   .ci/postgres.sh restart           # fast restart (the tests use it to kill every connection mid-run)
#   .ci/postgres.sh stop              # stop the cluster and remove its directory
#
# Roles: rail_owner owns the database (it creates rail's tables on first use); rail_appender and
# rail_auditor may connect, and the tests grant them INSERT and SELECT, or SELECT only, on rail's tables, as
# the README describes. The cluster
# listens on 127.0.0.1 only and trusts local connections: it exists for the length of one test run.
# Run as root, the cluster belongs to an unprivileged system user (created when missing), since PostgreSQL
# refuses to run as root.
set -euo pipefail

state=${RAIL_TEST_POSTGRES_DIR:-${TMPDIR:-/tmp}/rail-postgres}
database=rail_audit
os_user=railpg

bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || { echo "postgres.sh: no PostgreSQL server binaries (apt-get install -y postgresql)" >&2; exit 2; }
  echo "$found"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$os_user" -- "$@"; else "$@"; fi
}

free_port() {
  local port
  for port in $(seq 55432 55532); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "postgres.sh: no free port in 55432..55532" >&2; exit 2
}

print_env() { cat "$state/env"; }

start() {
  local bin port
  bin=$(bindir)
  if [ -f "$state/env" ] && as_owner "$bin/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
    print_env; return
  fi
  rm -rf "$state"
  if [ "$(id -u)" = 0 ] && ! id "$os_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$os_user"
  fi
  mkdir -p "$state"
  [ "$(id -u)" = 0 ] && chown "$os_user" "$state"
  chmod 700 "$state"
  as_owner "$bin/initdb" -D "$state/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 \
    >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; exit 2; }
  port=$(free_port)
  as_owner "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
    -o "-p $port -k $state -c listen_addresses=127.0.0.1" start >/dev/null \
    || { cat "$state/server.log" >&2; exit 2; }
  as_owner "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE ROLE rail_owner LOGIN;
CREATE ROLE rail_appender LOGIN;
CREATE ROLE rail_auditor LOGIN;
CREATE DATABASE $database OWNER rail_owner;
SQL
  cat >"$state/env" <<ENV
export RAIL_TEST_POSTGRES_URL=postgresql://rail_owner@127.0.0.1:$port/$database
export RAIL_TEST_POSTGRES_APPENDER_URL=postgresql://rail_appender@127.0.0.1:$port/$database
export RAIL_TEST_POSTGRES_AUDITOR_URL=postgresql://rail_auditor@127.0.0.1:$port/$database
export RAIL_TEST_POSTGRES_DIR=$state
ENV
  chmod 644 "$state/env"
  print_env
}

restart() {
  as_owner "$(bindir)/pg_ctl" -D "$state/data" -m fast -w -t 60 restart >/dev/null
}

stop() {
  if [ -d "$state/data" ]; then
    as_owner "$(bindir)/pg_ctl" -D "$state/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}

case "${1:-}" in
  start) start ;;
  restart) restart ;;
  stop) stop ;;
  *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
