#!/usr/bin/env bash
# scripts/slurm.sh — a one-node Slurm on this machine, for the tests and the
# job-script examples: munge, one slurmctld and one slurmd on localhost, with
# Debian's slurm-wlm (and its PMIx plugin: srun --mpi=pmix).
#
#   ./scripts/slurm.sh start [CPUS]   prints the SLURM_CONF to export
#   ./scripts/slurm.sh stop
#   ./scripts/slurm.sh env            the export line, when it is running
#
# Everything lives in $MPIIMPORT_SLURM_DIR (default /tmp/mpiimport-slurm):
# slurm.conf, spool and state directories, logs, pid files. The node
# declares CPUS (default 16) whatever the machine has
# (SlurmdParameters=config_overrides), so that a 2-core machine can run
# 8-task steps. Needs root (slurmd runs tasks as their user). Exits non-zero
# with the reason when a daemon does not come up.
set -euo pipefail

DIR=${MPIIMPORT_SLURM_DIR:-/tmp/mpiimport-slurm}
CONF=$DIR/slurm.conf

die() {
    echo "slurm.sh: $*" >&2
    for f in "$DIR"/log/*.log; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -15 "$f" >&2; }
    done
    exit 1
}

stop() {
    for d in slurmd slurmctld; do
        if [ -f "$DIR/$d.pid" ]; then
            kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true
        fi
    done
    for _ in $(seq 50); do
        pgrep -f "slurm(ctl)?d -f $CONF" >/dev/null || break
        sleep 0.1
    done
    pkill -9 -f "slurm(ctl)?d -f $CONF" 2>/dev/null || true
    rm -f "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
}

start() {
    local cpus=${1:-16}
    [ "$(id -u)" = 0 ] || die "needs root (slurmd starts each task as its user)"
    command -v slurmctld >/dev/null && command -v munged >/dev/null ||
        die "slurm-wlm and munge are not installed (./scripts/install-deps.sh installs them)"
    stop
    mkdir -p "$DIR/spool" "$DIR/state" "$DIR/log"
    local host
    host=$(hostname -s)
    # two free TCP ports (a machine may run a Slurm of its own on 6817/6818)
    local ports
    ports=$(/usr/bin/python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))') || die "cannot find free ports"
    local ctld_port=${ports% *} d_port=${ports#* }
    local plugins=/usr/lib/x86_64-linux-gnu/slurm-wlm
    [ -d "$plugins" ] || plugins=$(dirname "$(find /usr/lib -name 'mpi_pmix*.so' -print -quit 2>/dev/null)")
    cat >"$CONF" <<EOF
ClusterName=mpiimport
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
PluginDir=$plugins
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    # munge: Debian's package makes the key; a fresh root may lack the daemon's directories
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    if ! pgrep -x munged >/dev/null; then
        if [ ! -s /etc/munge/munge.key ]; then
            mkdir -p /etc/munge
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
        chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
        chmod 0400 /etc/munge/munge.key
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- munged || munged --force
        else
            munged --force
        fi
    fi
    munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munged not running?)"
    slurmctld -f "$CONF" || die "slurmctld did not start: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
    slurmd -f "$CONF" || die "slurmd did not start: $(tail -5 "$DIR/log/slurmd.log" 2>/dev/null)"
    export SLURM_CONF=$CONF
    for _ in $(seq 100); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.2
    done
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' ||
        die "the node did not come up: $(sinfo 2>&1 | tail -2); see $DIR/log"
    echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
    start) start "${2:-16}" ;;
    stop) stop ;;
    env) [ -f "$CONF" ] && echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start [CPUS] | stop | env" >&2; exit 2 ;;
esac
