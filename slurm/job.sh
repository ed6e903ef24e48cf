# shellcheck shell=bash
# What every mpimarl batch script shares: environment set-up, the launch, and surviving time limits
# and preemption. Sourced by train.sbatch, multinode.sbatch and sweep.sbatch; not submitted itself.
#
# Settings (environment variables; sbatch passes the submitting shell's environment on):
#   MPIMARL_SETUP         shell code that prepares the environment, run in the batch shell before
#                         anything else, e.g.
#                           export MPIMARL_SETUP='module load openmpi/4.1; source ~/envs/mpimarl/bin/activate'
#                         Default: activate .venv of the folder sbatch was called from, when there is one.
#   MPIMARL_PYTHON        the Python interpreter (default: python3 on PATH once MPIMARL_SETUP ran).
#   MPIMARL_LAUNCHER      srun (default) or mpiexec (the MPI's own launcher; MPICH's hydra and Open
#                         MPI's mpirun read the allocation from SLURM).
#   MPIMARL_SRUN_MPI      srun's --mpi plugin (default pmi2, which MPICH, also the `mpich` extra, speaks;
#                         pmix for an Open MPI built with PMIx); "none" passes no --mpi option.
#   MPIMARL_MAX_RESTARTS  how often a job may requeue itself after a time limit or preemption
#                         (default 3); the count is SLURM's own SLURM_RESTART_COUNT.
#
# Time limits and preemption: the scripts ask SLURM for SIGUSR1 shortly before the time limit
# (`#SBATCH --signal=B:USR1@<seconds>`). "B:" sends it to this batch shell only, and bash runs a
# trap only once its foreground child returns, so the launcher runs in the background while the
# shell waits. The trap forwards USR1 to the launcher (srun and MPICH's mpiexec pass it to every
# rank; each rank ends with exit code 138 and rank 0 closes the run file), waits for it to end,
# then requeues the job with `scontrol requeue`. The requeued job finds DIR/run.h5 and continues
# with `mpimarl train CONFIG --run-dir DIR --resume` from the newest checkpoint.
# (Open MPI's mpirun turns a SIGTERM into SIGKILL after a few seconds: use srun there.)

mpimarl_setup() {
    # The user's environment (modules, a venv, conda), then the interpreter to use.
    if [ -n "${MPIMARL_SETUP:-}" ]; then
        eval "$MPIMARL_SETUP"
    elif [ -f "${SLURM_SUBMIT_DIR:-$PWD}/.venv/bin/activate" ]; then
        # shellcheck disable=SC1091
        source "${SLURM_SUBMIT_DIR:-$PWD}/.venv/bin/activate"
    fi
    MPIMARL_PYTHON=${MPIMARL_PYTHON:-$(command -v python3)}
    export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
    export PYTHONUNBUFFERED=1
}

_mpimarl_on_signal() {
    # Remember the signal and pass it on to the launcher, which passes it to every rank.
    _mpimarl_signal=$1
    echo "mpimarl: $(date -u +%H:%M:%S) batch shell received SIG$1 (time limit or preemption ahead): stopping the run" >&2
    if [ -n "${_mpimarl_launcher:-}" ]; then
        kill -s "$1" "$_mpimarl_launcher" 2>/dev/null || true
    fi
}

mpimarl_launch_command() {
    # The launcher's command line for `python -m mpimarl ARGS...`, into the array _mpimarl_cmd.
    case "${MPIMARL_LAUNCHER:-srun}" in
        srun)
            # --kill-on-bad-exit: a rank that fails ends every task at once, so no allocation hangs.
            _mpimarl_cmd=(srun --kill-on-bad-exit=1)
            if [ "${MPIMARL_SRUN_MPI:-pmi2}" != none ]; then
                _mpimarl_cmd+=(--mpi="${MPIMARL_SRUN_MPI:-pmi2}")
            fi
            ;;
        mpiexec)
            _mpimarl_cmd=(mpiexec -n "${SLURM_NTASKS:?SLURM_NTASKS is not set: run this under sbatch}")
            ;;
        *)
            echo "mpimarl: MPIMARL_LAUNCHER must be srun or mpiexec, not '$MPIMARL_LAUNCHER'" >&2
            return 2
            ;;
    esac
    _mpimarl_cmd+=("$MPIMARL_PYTHON" -m mpimarl "$@")
}

_mpimarl_clean_shm() {
    # MPI_Abort leaves MPICH's shared-memory segments in /dev/shm, named after the PMI job and step.
    # A requeued job keeps its job id, so its new step would attach to the stale segment and wait
    # forever in MPI_Init. Remove, on every node of the job, the segments made since the launch
    # ($1, seconds since the epoch) that no process maps any more.
    local since=$1
    # shellcheck disable=SC2016 # expanded by the bash that srun starts on each node
    local clean='for f in $(find /dev/shm -maxdepth 1 -name "mpich_shm_*" -user "$(id -u)" -newermt "@$0" 2>/dev/null); do grep -qs "$f" /proc/[0-9]*/maps || rm -f "$f"; done'
    if [ -n "${SLURM_JOB_ID:-}" ] && [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then
        timeout 60 srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --mpi=none bash -c "$clean" "$since" || true
    else
        bash -c "$clean" "$since" || true
    fi
}

_mpimarl_skip_step_ids() {
    # A requeued job keeps its job id and numbers its steps from 0 again, and slurmstepd names a
    # step's PMI2 socket after both ($SlurmdSpoolDir/sock.pmi2.JOB.STEP). The previous run's aborted
    # step removes that path when its slurmstepd exits, which can be after the requeued job's step
    # has created it: the resumed run then works (MPI_Init needs no PMI fence here) until the one
    # fence that needs the socket, in MPI_Finalize, and srun ends a finished run with "mpi/pmi2:
    # failed to send temp kvs to compute nodes" (job FAILED). Removing the socket of a running step
    # gives exactly that. So restart K launches the run as step K, after K empty steps: no step of
    # an earlier run of this job had that id with a PMI2 socket (MPICH's shared-memory segments,
    # named after JOB.STEP too, no longer collide either).
    local i
    for ((i = 0; i < $1; i++)); do
        srun --ntasks=1 --nodes=1 --mpi=none true >/dev/null 2>&1 || true
    done
}

mpimarl_train() {
    # mpimarl_train RUN_DIR CONFIG [train options and key=value overrides...]
    # Runs (or, when RUN_DIR/run.h5 exists, resumes) one training run; requeues the job when it was
    # stopped by SIGUSR1 and restarts are left. Returns the run's exit code.
    local run_dir=$1 config=$2
    shift 2
    local restarts=${SLURM_RESTART_COUNT:-0} max=${MPIMARL_MAX_RESTARTS:-3}
    local args=(train "$config" --run-dir "$run_dir")
    if [ -e "$run_dir/run.h5" ]; then
        echo "mpimarl: $run_dir/run.h5 exists (job restart $restarts): resuming from its newest checkpoint" >&2
        args+=(--resume)
    fi
    mpimarl_launch_command "${args[@]}" "$@" || return $?
    if [ "${_mpimarl_cmd[0]}" = srun ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        _mpimarl_skip_step_ids "$restarts"
    fi
    echo "mpimarl: job ${SLURM_JOB_ID:-?} restart $restarts on ${SLURM_JOB_NODELIST:-?}: ${_mpimarl_cmd[*]}" >&2

    _mpimarl_signal=""
    local launched
    launched=$(date +%s)
    trap '_mpimarl_on_signal USR1' USR1
    trap '_mpimarl_on_signal TERM' TERM
    "${_mpimarl_cmd[@]}" &
    _mpimarl_launcher=$!
    local code=0 ticks=0
    wait "$_mpimarl_launcher"
    code=$?
    # A trapped signal makes `wait` return early (code > 128) while the launcher still runs. srun
    # drops a signal that arrives before its tasks have started, and a rank still importing has no
    # handler yet, so repeat the signal every 5 s for as long as the launcher runs (a rank that is
    # already stopping ignores the repeats). Poll rather than `wait` again: a second `wait` would
    # not return until the launcher ends, and a slow start would then run into the time limit.
    if kill -0 "$_mpimarl_launcher" 2>/dev/null; then
        while kill -0 "$_mpimarl_launcher" 2>/dev/null; do
            sleep 0.5
            ticks=$((ticks + 1))
            if [ -n "$_mpimarl_signal" ] && [ $((ticks % 10)) -eq 0 ]; then
                kill -s "$_mpimarl_signal" "$_mpimarl_launcher" 2>/dev/null || true
            fi
        done
        wait "$_mpimarl_launcher"
        code=$?
    fi
    trap - USR1 TERM
    _mpimarl_launcher=""
    if [ "$code" -ne 0 ]; then
        _mpimarl_clean_shm "$((launched - 1))"
    fi

    if [ "$_mpimarl_signal" = USR1 ] && [ "$code" -ne 0 ]; then
        if [ "$restarts" -lt "$max" ]; then
            echo "mpimarl: run stopped (exit $code); requeueing job $SLURM_JOB_ID (restart $((restarts + 1)) of $max)" >&2
            if scontrol requeue "$SLURM_JOB_ID"; then
                return 0
            fi
            echo "mpimarl: scontrol requeue failed (does the partition allow requeue?)" >&2
        else
            echo "mpimarl: run stopped (exit $code); not requeueing: all $max restarts used (MPIMARL_MAX_RESTARTS)" >&2
        fi
    fi
    return "$code"
}

mpimarl_job_log_header() {
    echo "mpimarl: $(date -u +%Y-%m-%dT%H:%M:%SZ) job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}), ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?} node(s)" >&2
}
