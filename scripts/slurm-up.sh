#!/usr/bin/env bash
# Bring up a one-node Slurm on this machine, with fake GPUs, for Masnaa's
# `slurm` executor tests and for developers. Idempotent: run it again and it
# only (re)starts what is missing or reconfigures what changed.
#
# Needs root on Debian 12 (Slurm 22.05 from Debian). Works without systemd
# (containers, CI): the daemons are started with setsid.
#
# Environment overrides (MASNAA_SLURM_* rather than SLURM_*, because Slurm's own
# commands read SLURM_* variables as options):
#   MASNAA_SLURM_NODE       node name                       (default: `hostname -s`)
#   MASNAA_SLURM_GPUS       fake GPUs on the node           (default: 8)
#   MASNAA_SLURM_GPU_TYPE   GRES type of those GPUs         (default: h100)
#   MASNAA_SLURM_CPUS       CPUs the node claims            (default: 64)
#   MASNAA_SLURM_MEMORY_MB  memory the node claims, MiB     (default: 512000)
#   MASNAA_SLURM_PARTITION  the default partition           (default: masnaa)
#   MASNAA_SLURM_KILL_WAIT  seconds between TERM and KILL on a hard cancel (default: 3)
#   MASNAA_SLURM_TIMEOUT    seconds to wait for the node to be idle (default: 90)
#   MASNAA_SLURM_ACCOUNTING 1: job accounting in slurmdbd on a local MariaDB, so that
#                           `sacct` answers as on a site; 0: none   (default: 1)
#   MASNAA_SLURM_ACCOUNTS   Slurm accounts created for root, comma-separated
#                           (default: research,startup)
#   MASNAA_SLURM_SKIP_INSTALL=1  never call apt-get
#
# Files: /etc/slurm/{slurm,gres,slurmdbd}.conf, logs in /var/log/slurm, state in
# /var/spool/slurmctld and /var/spool/slurmd, fake GPU device nodes in
# /run/masnaa-fakegpu (symlinks to /dev/null: a GRES without File= drains the
# node in 22.05), accounting in the MariaDB database slurm_acct_db (reached by
# its socket only: MariaDB is started with --skip-networking). Stop everything
# with scripts/slurm-down.sh.
set -euo pipefail

started=$(date +%s.%N)
NODE=${MASNAA_SLURM_NODE:-$(hostname -s)}
GPUS=${MASNAA_SLURM_GPUS:-8}
GPU_TYPE=${MASNAA_SLURM_GPU_TYPE:-h100}
CPUS=${MASNAA_SLURM_CPUS:-64}
MEMORY_MB=${MASNAA_SLURM_MEMORY_MB:-512000}
PARTITION=${MASNAA_SLURM_PARTITION:-masnaa}
KILL_WAIT=${MASNAA_SLURM_KILL_WAIT:-3}
TIMEOUT=${MASNAA_SLURM_TIMEOUT:-90}
ACCOUNTING=${MASNAA_SLURM_ACCOUNTING:-1}
ACCOUNTS=${MASNAA_SLURM_ACCOUNTS:-research,startup}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
FAKE_DEV=/run/masnaa-fakegpu

say() { printf 'slurm-up: %s\n' "$*"; }
die() {
    printf 'slurm-up: ERROR: %s\n' "$*" >&2
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmdbd.log" \
        "$LOG_DIR/mariadb.out" /var/log/munge/munged.log; do
        if [[ -f $f ]]; then
            printf '\n--- last lines of %s ---\n' "$f" >&2
            tail -n 30 "$f" >&2
        fi
    done
    exit 1
}

usage() { printf 'slurm-up: ERROR: %s\n' "$*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || usage "run as root (it writes /etc/slurm and starts daemons)"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || usage "MASNAA_SLURM_GPUS must be a positive integer, got '$GPUS'"
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || usage "MASNAA_SLURM_CPUS must be a positive integer, got '$CPUS'"
[[ $GPU_TYPE =~ ^[A-Za-z0-9_]+$ ]] || usage "MASNAA_SLURM_GPU_TYPE must be letters, digits or _, got '$GPU_TYPE'"
[[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || usage "MASNAA_SLURM_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'"
[[ $ACCOUNTS =~ ^[a-z0-9_-]+(,[a-z0-9_-]+)*$ ]] \
    || usage "MASNAA_SLURM_ACCOUNTS must be comma-separated lower-case names, got '$ACCOUNTS'"
mkdir -p "$LOG_DIR"

# 1. Packages -----------------------------------------------------------------
packages=(slurm-wlm munge)
[[ $ACCOUNTING == 1 ]] && packages+=(slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ ${MASNAA_SLURM_SKIP_INSTALL:-0} == 1 ]] && die "${missing[*]} missing and MASNAA_SLURM_SKIP_INSTALL=1"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "${missing[@]}" >/tmp/masnaa-slurm-apt.log 2>&1; then
        apt-get update -qq >>/tmp/masnaa-slurm-apt.log 2>&1
        apt-get install -y -qq "${missing[@]}" >>/tmp/masnaa-slurm-apt.log 2>&1 \
            || { tail -n 20 /tmp/masnaa-slurm-apt.log >&2; die "apt-get install failed"; }
    fi
fi

# 2. Munge ----------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating a munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    setsid runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer"
fi

# 2b. MariaDB for slurmdbd -------------------------------------------------------
# Started by hand (no systemd in containers), on its socket only: the password
# below is for a throw-away local database that no other host can reach, and it
# is written only to the root-only slurmdbd.conf.
DB_PASS=masnaa-local-accounting
if [[ $ACCOUNTING == 1 ]]; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
        say "starting MariaDB"
        setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
            </dev/null >>"$LOG_DIR/mariadb.out" 2>&1 &
        for _ in $(seq 300); do  # up to 30 s: a first start initialises InnoDB
            mariadb -e 'SELECT 1' >/dev/null 2>&1 && break
            sleep 0.1
        done
        mariadb -e 'SELECT 1' >/dev/null 2>&1 || die "MariaDB does not answer (see $LOG_DIR/mariadb.out)"
    fi
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost';
        ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
        || die "could not create the accounting database"
fi

# 3. Fake GPUs and configuration ------------------------------------------------
mkdir -p "$FAKE_DEV" /var/spool/slurmctld /var/spool/slurmd "$CONF_DIR"
for ((i = 0; i < GPUS; i++)); do
    ln -sfn /dev/null "$FAKE_DEV/nvidia$i"
done

last=$((GPUS - 1))
gres_files="$FAKE_DEV/nvidia[0-$last]"
[[ $GPUS -eq 1 ]] && gres_files="$FAKE_DEV/nvidia0"

if [[ $ACCOUNTING == 1 ]]; then
    # Typed and untyped GPUs both recorded, so sacct's AllocTRES says which type ran.
    accounting_conf="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu,gres/gpu:$GPU_TYPE"
else
    accounting_conf="AccountingStorageType=accounting_storage/none"
fi

new_conf=$(cat <<EOF
# Written by Masnaa's scripts/slurm-up.sh: a one-node test cluster with fake GPUs.
ClusterName=masnaa
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
KillWait=$KILL_WAIT
InactiveLimit=0
Waittime=0
MaxJobCount=100000
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
$accounting_conf
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:$GPU_TYPE:$GPUS Feature=fakegpu,$GPU_TYPE State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
new_gres="NodeName=$NODE Name=gpu Type=$GPU_TYPE File=$gres_files"

new_dbd=$(cat <<EOF
# Written by Masnaa's scripts/slurm-up.sh: accounting of the one-node test cluster.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
EOF
)

changed=0
if [[ $ACCOUNTING == 1 ]] \
    && { [[ ! -f $CONF_DIR/slurmdbd.conf ]] || [[ $(cat "$CONF_DIR/slurmdbd.conf") != "$new_dbd" ]]; }; then
    (umask 077 && printf '%s\n' "$new_dbd" >"$CONF_DIR/slurmdbd.conf")
    changed=1
fi
if [[ ! -f $CONF_DIR/slurm.conf ]] || [[ $(cat "$CONF_DIR/slurm.conf") != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" >"$CONF_DIR/slurm.conf"
    changed=1
fi
if [[ ! -f $CONF_DIR/gres.conf ]] || [[ $(cat "$CONF_DIR/gres.conf") != "$new_gres" ]]; then
    printf '%s\n' "$new_gres" >"$CONF_DIR/gres.conf"
    changed=1
fi

# 4. Daemons --------------------------------------------------------------------
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {
    local pidfile=$1
    if alive "$pidfile"; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
    fi
}
if [[ $changed -eq 1 ]]; then
    say "configuration written to $CONF_DIR (node $NODE, $GPUS × gpu:$GPU_TYPE, $CPUS CPUs)"
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
    stop /run/slurmdbd.pid
fi
if [[ $ACCOUNTING == 1 ]]; then
    if ! alive /run/slurmdbd.pid; then
        say "starting slurmdbd"
        setsid /usr/sbin/slurmdbd </dev/null >>"$LOG_DIR/slurmdbd.out" 2>&1 || die "slurmdbd failed to start"
    fi
    for _ in $(seq 300); do  # slurmdbd retries its database every 5 s
        sacctmgr -n show cluster >/dev/null 2>&1 && break
        sleep 0.1
    done
    sacctmgr -n show cluster >/dev/null 2>&1 || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"
    # The cluster, then each account with root as a user of it: without that
    # association Slurm charges a job to the user's default account instead.
    if [[ -z $(sacctmgr -n -P show cluster masnaa format=cluster) ]]; then
        sacctmgr -i add cluster masnaa >/dev/null || die "sacctmgr could not add the cluster"
    fi
    IFS=, read -ra wanted <<<"$ACCOUNTS"
    for account in "${wanted[@]}"; do
        if [[ -z $(sacctmgr -n -P show account "$account" format=account) ]]; then
            sacctmgr -i add account "$account" cluster=masnaa >/dev/null \
                || die "sacctmgr could not add account $account"
        fi
        if [[ -z $(sacctmgr -n -P show assoc user=root account="$account" format=account) ]]; then
            sacctmgr -i add user root account="$account" cluster=masnaa >/dev/null \
                || die "sacctmgr could not add root to account $account"
        fi
    done
fi
if ! alive /run/slurmctld.pid; then
    say "starting slurmctld"
    setsid /usr/sbin/slurmctld </dev/null >>"$LOG_DIR/slurmctld.out" 2>&1 || die "slurmctld failed to start"
fi
if ! alive /run/slurmd.pid; then
    say "starting slurmd"
    setsid /usr/sbin/slurmd -N "$NODE" </dev/null >>"$LOG_DIR/slurmd.out" 2>&1 || die "slurmd failed to start"
fi

# 5. Wait for the node ------------------------------------------------------------
deadline=$(($(date +%s) + TIMEOUT))
state=""
while :; do
    state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)
    case $state in
        idle | mixed | allocated | completing) break ;;
        drained | draining | down | "down*" | drained* | "idle*" | "")
            # A node left drained or down by an earlier run (tests do that) is resumed.
            if [[ $state == drain* || $state == down ]]; then
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            fi
            ;;
    esac
    if (($(date +%s) >= deadline)); then
        sinfo -N -l >&2 || true
        scontrol show node "$NODE" >&2 || true
        die "node $NODE is not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
    fi
    sleep 0.5
done

elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
say "node $NODE is $state with gres $(sinfo -h -n "$NODE" -o '%G'), partition $PARTITION; ready in ${elapsed}s"
