#!/usr/bin/env bash
# Stop the PostgreSQL that pg-up.sh started (data stays in $MASNAA_PG_DIR).
set -euo pipefail
PG_DIR=${MASNAA_PG_DIR:-/tmp/masnaa-pg}
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$BIN/pg_ctl" -D "$PG_DIR/data" stop -m fast
else "$BIN/pg_ctl" -D "$PG_DIR/data" stop -m fast; fi
