#!/usr/bin/env bash
# A one-machine Slurm cluster (a controller and one compute node) for trying the job templates and the requeue path
# without a real cluster: Debian's slurm-wlm and munge, run as root.
#
#   apt-get install slurm-wlm munge          # once
#   scripts/slurm/local_cluster.sh start     # prints the export line the Slurm commands need
#   export SLURM_CONF=/tmp/gan_lightning_slurm/slurm.conf
#   sbatch scripts/slurm/train.sbatch ...    # as on a real cluster
#   scripts/slurm/local_cluster.sh stop
#
# GAN_SLURM_DIR (default /tmp/gan_lightning_slurm) holds slurm.conf, the daemons' state and their logs.
set -euo pipefail

DIR=${GAN_SLURM_DIR:-/tmp/gan_lightning_slurm}
HOST=$(hostname -s)
CPUS=$(nproc --all)  # --all: nproc alone follows OMP_NUM_THREADS
MEM_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512))

stop() {
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
        if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill "$(cat "$pidfile")" && sleep 1
        fi
        rm -f "$pidfile"
    done
}

start() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null ||
        { echo "local_cluster.sh: Slurm is not installed; run: apt-get install slurm-wlm munge" >&2; exit 2; }
    [[ $(id -u) == 0 ]] || { echo "local_cluster.sh: run it as root (the daemons switch users)" >&2; exit 2; }
    stop
    mkdir -p "$DIR/state" "$DIR/spool" /run/munge
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
    chown root:root /etc/munge/munge.key /run/munge && chmod 400 /etc/munge/munge.key
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=gan_lightning_local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
ReturnToService=2
KillWait=60
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    munged --force --pid-file="$DIR/munged.pid" 2>/dev/null || munged --force
    [[ -f $DIR/munged.pid ]] || pgrep -o munged > "$DIR/munged.pid"
    slurmctld -f "$DIR/slurm.conf"
    slurmd -f "$DIR/slurm.conf"
    export SLURM_CONF=$DIR/slurm.conf
    for _ in $(seq 30); do
        sinfo -h -o %T 2>/dev/null | grep -qE "^idle" && break
        sleep 1
    done
    sinfo -h -o %T | grep -qE "^idle" ||
        { echo "local_cluster.sh: the node did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2; exit 1; }
    echo "export SLURM_CONF=$DIR/slurm.conf"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: local_cluster.sh start|stop" >&2; exit 2 ;;
esac
