#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for contributors and CI (tests/test_slurm.py).
#
#   scripts/slurm/start_test_cluster.sh DIR      # start; prints `export SLURM_CONF=DIR/slurm.conf`
#   eval "$(scripts/slurm/start_test_cluster.sh /tmp/slurm)"   # ... and use it in this shell
#   scripts/slurm/stop_test_cluster.sh DIR       # stop exactly the daemons started here
#
# Everything lives in DIR: slurm.conf, state, spool, logs, pid files, and a munge daemon with its
# own key and socket. Clients (sbatch, squeue, sinfo, dask-jobqueue) find this cluster through
# SLURM_CONF=DIR/slurm.conf; /etc/slurm is never read or changed. As root, the script also links
# /run/slurm/conf/slurm.conf to DIR/slurm.conf (removed on stop), because Snakemake's slurm executor
# runs each job's `srun` without SLURM_CONF (see below).
# No systemd needed: the daemons run in the background and their pids are kept in DIR/pids.
#
# Installs slurm-wlm and munge with apt-get when slurmctld is missing and we are root (Debian 12
# ships Slurm 22.05). One CPU-only node `localhost` (CPUs = nproc, RealMemory from `slurmd -C`),
# one partition `debug` (the default), no accounting storage (so `sacct` does not work: use
# `squeue` for job status, which works because MinJobAge=300 keeps finished jobs visible).
#
# Environment: START_TIMEOUT (seconds to wait for the node to be idle, default 60),
# SLURMCTLD_PORT / SLURMD_PORT (default: two free ports), SLURM_TEST_CPUS (CPUs of the node,
# default nproc; more than the machine has is allowed: SlurmdParameters=config_overrides).
set -euo pipefail

# Command name of a pid (empty when gone).
comm_of() { cat "/proc/$1/comm" 2>/dev/null || ps -p "$1" -o comm= 2>/dev/null || true; }
die() { echo "start_test_cluster: $*" >&2; exit 1; }
say() { echo "start_test_cluster: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
TIMEOUT=${START_TIMEOUT:-60}
export PATH="$PATH:/usr/sbin:/sbin"  # the daemons live in sbin, not always on a user's PATH

# --- install -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "slurmctld/munged not found and not root: install slurm-wlm and munge (apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null 2>&1 || die "slurmctld not found and no apt-get: install Slurm (slurmctld, slurmd, munge) yourself"
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 slurm-wlm munge >&2
fi
for exe in slurmctld slurmd munged sinfo sbatch squeue scontrol; do
    command -v "$exe" >/dev/null 2>&1 || die "$exe not found after install"
done
# Meant to run as root (CI, or sudo): slurmctld runs as the calling user (SlurmUser), slurmd as root.
USER_NAME=$(id -un)

# --- refuse to start twice -------------------------------------------------------------------
if [ -f "$DIR/pids" ]; then
    while read -r name pid; do
        if [ -n "${pid:-}" ] && [ "$(comm_of "$pid")" = "$name" ]; then
            die "$name (pid $pid) from an earlier start is still running: run scripts/slurm/stop_test_cluster.sh $DIR first"
        fi
    done <"$DIR/pids"
    rm -f "$DIR/pids"
fi

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
rm -rf "$DIR/state"/* "$DIR/spool"/*  # a fresh cluster every time (job ids from 1)

# --- munge: own key and socket (the socket path must stay short: Unix sockets hold 107 bytes) ---
MUNGE_DIR="$DIR/munge"
if [ ${#MUNGE_DIR} -gt 80 ]; then
    MUNGE_DIR=$(mktemp -d /tmp/gwnpe-munge.XXXXXX)
    say "DIR is a long path; munge files go to $MUNGE_DIR"
fi
mkdir -p "$MUNGE_DIR"
chmod 700 "$MUNGE_DIR"
if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
echo "$MUNGE_DIR" >"$DIR/munge_dir"  # stop_test_cluster.sh removes it when outside DIR

# --- ports -----------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null
}
CTLD_PORT=${SLURMCTLD_PORT:-$(free_port || echo 6817)}
SLURMD_PORT=${SLURMD_PORT:-$(free_port || echo 6818)}
[ "$CTLD_PORT" != "$SLURMD_PORT" ] || SLURMD_PORT=$((CTLD_PORT + 1))

# --- slurm.conf ------------------------------------------------------------------------------
CPUS=${SLURM_TEST_CPUS:-$(nproc)}
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
[ -n "$MEM" ] || die "could not read RealMemory from 'slurmd -C'"

cat >"$DIR/slurm.conf" <<EOF
# Written by scripts/slurm/start_test_cluster.sh: a single-node test cluster on localhost.
ClusterName=gwnpe-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$USER_NAME
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
# No cgroups in containers: track job processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# One line per finished job (id, name, state, partition, times) in log/jobcomp.log: a record of
# what ran here without accounting storage (`sacct` still does not work).
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
# Cores and memory are the consumable resources.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
# Finished jobs stay visible to squeue for 5 minutes (the Snakemake plugin's squeue status check
# needs MinJobAge >= 3x slurm-init-seconds-before-status-checks).
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=60
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
Waittime=0
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"
: >"$DIR/pids"

# Slurm commands inside jobs must find this config too, and Snakemake's slurm executor starts each
# job's step with `srun` in an environment stripped of SLURM_* variables, SLURM_CONF included. With no
# SLURM_CONF, Slurm clients read /etc/slurm/slurm.conf, then /run/slurm/conf/slurm.conf (where a
# configless compute node keeps its copy): link the latter to ours (root only; removed on stop).
RUN_LINK=/run/slurm/conf/slurm.conf
if [ -e /etc/slurm/slurm.conf ]; then
    say "WARNING: /etc/slurm/slurm.conf exists: Slurm commands in jobs that drop SLURM_CONF (Snakemake's"
    say "         srun job steps) will use that cluster, not this one"
elif [ "$(id -u)" -ne 0 ]; then
    say "WARNING: not root, so $RUN_LINK is not set: Snakemake's srun job steps will not find this cluster"
elif [ -e "$RUN_LINK" ] && [ ! -L "$RUN_LINK" ]; then
    say "WARNING: $RUN_LINK is a real file (a configless node?): left alone; Snakemake's job steps will use it"
else
    if [ -L "$RUN_LINK" ] && [ "$(readlink "$RUN_LINK")" != "$DIR/slurm.conf" ]; then
        say "note: $RUN_LINK pointed to $(readlink "$RUN_LINK"); now to this cluster"
    fi
    mkdir -p "$(dirname "$RUN_LINK")"
    ln -sfn "$DIR/slurm.conf" "$RUN_LINK"
    echo "$RUN_LINK" >"$DIR/run_link"
fi

# --- start -----------------------------------------------------------------------------------
show_logs() {
    for f in "$MUNGE_DIR/munged.log" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
        [ -f "$f" ] && { echo "----- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
    done
    return 0
}
fail() {
    echo "start_test_cluster: $*" >&2
    show_logs
    "$(dirname "$0")/stop_test_cluster.sh" "$DIR" >&2 || true
    exit 1
}
# Wait for a daemon's pid file, then record the pid.
record_pid() {  # name pidfile
    local i pid
    for i in $(seq 1 100); do
        if [ -s "$2" ]; then
            pid=$(head -1 "$2" | tr -d ' ')
            if [ "$(comm_of "$pid")" = "$1" ]; then
                echo "$1 $pid" >>"$DIR/pids"
                return 0
            fi
        fi
        sleep 0.1
    done
    fail "$1 did not start (no live pid in $2)"
}

# munged forks into the background and writes its pid file.
munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" >&2 || fail "munged failed to start"
record_pid munged "$MUNGE_DIR/munged.pid"

# slurmctld: -c clears any old state, -i ignores errors in it. Both daemons fork by themselves.
slurmctld -f "$SLURM_CONF" -c -i >&2 || fail "slurmctld failed to start"
record_pid slurmctld "$DIR/run/slurmctld.pid"
slurmd -f "$SLURM_CONF" -N localhost >&2 || fail "slurmd failed to start"
record_pid slurmd "$DIR/run/slurmd.pid"

deadline=$((SECONDS + TIMEOUT))
state=""
while :; do
    state=$(sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in
        idle) break ;;
        down* | drain* | fail*)
            # a first registration can leave the node DOWN for a moment; bring it back once
            scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    [ $SECONDS -lt $deadline ] || fail "node 'localhost' not idle after ${TIMEOUT}s (sinfo state: '${state:-no answer}')"
    sleep 0.5
done

echo "SLURM_CONF=$SLURM_CONF" >"$DIR/env"
say "cluster up in $DIR: node localhost ($CPUS CPUs, ${MEM} MB), partition debug; ports $CTLD_PORT/$SLURMD_PORT"
echo "export SLURM_CONF=$SLURM_CONF"
