#!/usr/bin/env bash
# Stop the one-node Slurm started by scripts/slurm-up.sh.
#   --purge   also remove its state, logs, configuration and fake GPU nodes
#   --munge   also stop munged
#   --mariadb also stop MariaDB (started by slurm-up.sh for slurmdbd)
# Idempotent: stopping what is not running is not an error.
set -euo pipefail

purge=0
munge=0
mariadb=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        --munge) munge=1 ;;
        --mariadb) mariadb=1 ;;
        *) printf 'slurm-down: unknown option %s (expected --purge, --munge or --mariadb)\n' "$arg" >&2; exit 2 ;;
    esac
done

stop() {
    local name=$1 pidfile=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        printf 'slurm-down: stopped %s (pid %s)\n' "$name" "$pid"
    fi
    rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
if [[ $munge -eq 1 ]]; then
    stop munged /run/munge/munged.pid
fi
if [[ $purge -eq 1 ]]; then
    if command -v mariadb >/dev/null && mariadb -e 'SELECT 1' >/dev/null 2>&1; then
        mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db' || true
    fi
    rm -rf /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/masnaa-fakegpu \
        /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf
    printf 'slurm-down: state, logs and configuration removed\n'
fi
if [[ $mariadb -eq 1 ]]; then
    stop mariadbd /run/mysqld/mysqld.pid
fi
