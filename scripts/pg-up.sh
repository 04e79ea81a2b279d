#!/usr/bin/env bash
# Start a throw-away PostgreSQL on loopback for Masnaa's tests and benchmarks.
#
# Idempotent. Uses Debian's postgresql package (installed if missing, as root),
# initdb + pg_ctl as the unprivileged `postgres` user, a data directory under
# $MASNAA_PG_DIR (default /tmp/masnaa-pg) and port $MASNAA_PG_PORT (default 55432).
# Prints the SQLAlchemy URL on its last line, e.g.
#   postgresql+psycopg://masnaa:masnaa@127.0.0.1:55432/masnaa
set -euo pipefail

PG_DIR=${MASNAA_PG_DIR:-/tmp/masnaa-pg}
PG_PORT=${MASNAA_PG_PORT:-55432}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
RUN_AS=(as_root runuser -u postgres --)
if [ "$(id -u)" != 0 ] && [ "$(id -un)" != postgres ] && ! command -v sudo >/dev/null; then
    RUN_AS=()   # a developer's own account: run the server as themselves
fi

as_root mkdir -p "$PG_DIR"
if [ ${#RUN_AS[@]} -gt 0 ]; then as_root chown postgres:postgres "$PG_DIR"; fi

if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    "${RUN_AS[@]}" "$BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >/dev/null
fi
if ! "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=200" start >/dev/null
fi
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${PSQL[@]}" -c "select 1 from pg_roles where rolname='masnaa'")" != 1 ]; then
    "${PSQL[@]}" -c "create role masnaa login superuser password 'masnaa'"
fi
if [ "$("${PSQL[@]}" -c "select 1 from pg_database where datname='masnaa'")" != 1 ]; then
    "${PSQL[@]}" -c "create database masnaa owner masnaa"
fi
echo "postgresql+psycopg://masnaa:masnaa@127.0.0.1:${PG_PORT}/masnaa"
