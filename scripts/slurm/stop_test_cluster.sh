#!/usr/bin/env bash
# Stop the test cluster that scripts/slurm/start_test_cluster.sh DIR started: cancel its jobs,
# then end exactly the daemons whose pids it recorded in DIR/pids (nothing found by name).
#   scripts/slurm/stop_test_cluster.sh DIR
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 1; }
[ -d "$1" ] || { echo "stop_test_cluster: no directory $1" >&2; exit 0; }
DIR=$(cd "$1" && pwd -P)
[ -f "$DIR/pids" ] || { echo "stop_test_cluster: nothing recorded in $DIR/pids" >&2; exit 0; }

# Command name of a pid (empty when gone).
comm_of() { cat "/proc/$1/comm" 2>/dev/null || ps -p "$1" -o comm= 2>/dev/null || true; }
# A recorded pid counts only while it is still that daemon (a stale file after a reboot must not
# make us signal an unrelated process that got the same pid).
alive() {  # name pid
    [ -n "${2:-}" ] && kill -0 "$2" 2>/dev/null && [ "$(comm_of "$2")" = "$1" ]
}

# Jobs first, while slurmctld and slurmd still run (this cluster only: SLURM_CONF points at it).
ctld_pid=$(awk '$1 == "slurmctld" {print $2}' "$DIR/pids")
if alive slurmctld "$ctld_pid" && [ -f "$DIR/slurm.conf" ]; then
    SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --user "$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do
        [ -z "$(SLURM_CONF="$DIR/slurm.conf" timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
        sleep 0.5
    done
fi

# Daemons in reverse start order: slurmd, slurmctld, munged. TERM, then KILL after 10 s.
tac "$DIR/pids" | while read -r name pid; do
    alive "$name" "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        alive "$name" "$pid" || break
        sleep 0.1
    done
    if alive "$name" "$pid"; then
        echo "stop_test_cluster: $name (pid $pid) ignored TERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stop_test_cluster: stopped $name (pid $pid)" >&2
done
rm -f "$DIR/pids" "$DIR/env"

# The /run/slurm/conf/slurm.conf link made by the start script, if it still points here.
if [ -f "$DIR/run_link" ]; then
    link=$(cat "$DIR/run_link")
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$DIR/slurm.conf" ]; then
        rm -f "$link"
    fi
    rm -f "$DIR/run_link"
fi

# A munge folder outside DIR (made for a long DIR path) is removed too.
if [ -f "$DIR/munge_dir" ]; then
    m=$(cat "$DIR/munge_dir")
    case "$m" in
        /tmp/gwnpe-munge.*) rm -rf "$m" ;;
    esac
    rm -f "$DIR/munge_dir"
fi
exit 0
