#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests (Debian packages; installs them when root),
# and prints its URL. Idempotent: a cluster already running is reused.
#   usage: scripts/postgres.sh start|stop|url
set -euo pipefail
PGDIR=${ATOLL_TEST_PG_DIR:-/tmp/atoll-test-pg}
PORT=${ATOLL_TEST_PG_PORT:-54329}
URL="postgresql+psycopg://atoll@127.0.0.1:${PORT}/postgres"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_owner() {  # postgres refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  BIN=$(find_bin)
  if [ -z "$BIN" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing PostgreSQL from Debian packages..." >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      BIN=$(find_bin)
    else
      echo "PostgreSQL is not installed: run 'sudo apt-get install -y postgresql'" >&2; exit 3
    fi
  fi
  if [ ! -f "$PGDIR/PG_VERSION" ]; then
    mkdir -p "$PGDIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
    as_owner "$BIN/initdb" -D "$PGDIR" -U atoll --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_owner "$BIN/pg_ctl" -D "$PGDIR" status >/dev/null 2>&1; then
    as_owner "$BIN/pg_ctl" -D "$PGDIR" -l "$PGDIR/server.log" -w \
      -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null
  fi
  echo "$URL"
}

case "${1:-start}" in
  start) start ;;
  stop) BIN=$(find_bin); as_owner "$BIN/pg_ctl" -D "$PGDIR" -m fast stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
