"""slurm/*.sbatch on a real one-node SLURM cluster (tests/slurm/cluster.py), submitted as users do.

Every job runs real MPICH ranks with `srun --mpi=pmi2`; the run files are read back with load_run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, REPO
from tests.slurm.cluster import LocalCluster
from tests.slurm.conftest import wait_for

# A loaded machine can take minutes per job: allow more than the suite's default 300 s per test.
pytestmark = [pytest.mark.mpi, pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(600)]

SLURM = REPO / "slurm"
TINY = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=6",
        "evaluation.pool_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4"]
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def _resume_unavailable() -> str | None:
    """Why requeue-and-resume cannot be tested yet, or None."""
    out = subprocess.run([sys.executable, "-m", "mpimarl", "train", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    return None if "--resume" in out.stdout else "`mpimarl train --resume` is not in this build yet (checkpoints)"


def _submit(cluster: LocalCluster, script: str, args: list[str], out: Path, *sbatch: str,
            **env: str) -> str:
    """sbatch SCRIPT ARGS with 3 tasks from the repository root; returns the job id."""
    job_env = dict(cluster.env(), MPIMARL_PYTHON=sys.executable, MPIMARL_SETUP=":", PYTHONPATH=str(REPO), **env)
    cmd = ["sbatch", "--parsable", "--ntasks=3", f"--output={out}", *sbatch, str(SLURM / script), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=job_env, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def _finished(info: dict[str, str]) -> bool:
    return info.get("JobState") in FINAL_STATES


def test_train_sbatch_runs_a_job_to_completion(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    """train.sbatch: server + 2 trainers under srun; the run file is complete and says finished."""
    log = tmp_path / "job.out"
    job = _submit(slurm_cluster, "train.sbatch",
                  [str(CONFIGS / "connect_four_league.yaml"), str(tmp_path / "run"), *TINY], log)
    info = wait_for(slurm_cluster, job, _finished, 240, "the end of the job")
    text = log.read_text()
    assert info["JobState"] == "COMPLETED", text
    run = load_run(tmp_path / "run" / "run.h5")
    assert run.attrs["finished"] is True and run.attrs["world_size"] == 3
    assert sorted(run.pool.groupby("policy_id")["version"].max()) == [2, 2]
    assert len(run.train) > 0 and (run.matches["kind"] == "evaluation").any()
    assert "srun --kill-on-bad-exit=1 --mpi=pmi2" in text and "Run file:" in text


def test_time_limit_signal_stops_the_run_cleanly(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    """SLURM's own early signal (--signal=B:USR1) ahead of a 3-minute limit reaches every rank through
    the batch shell's trap: the run stops before the limit (exit 138, run file closed, failure named);
    with MPIMARL_MAX_RESTARTS=0 the job is not requeued. (The signal comes 60 s in: on a loaded
    machine the ranks took up to a minute to start, and the run must have trained before it stops.)"""
    log = tmp_path / "job.out"
    job = _submit(slurm_cluster, "train.sbatch",
                  [str(CONFIGS / "cartpole.yaml"), str(tmp_path / "run"), "--steps", "100000000"], log,
                  "--time=3", "--signal=B:USR1@120", MPIMARL_MAX_RESTARTS="0")
    info = wait_for(slurm_cluster, job, _finished, 320, "the end of the job")
    text = log.read_text()
    assert info["JobState"] == "FAILED", (info, text)  # stopped by the run, not killed at TIMEOUT
    assert "batch shell received SIGUSR1" in text and "not requeueing" in text, text
    assert info["Restarts"] == "0"
    run = load_run(tmp_path / "run" / "run.h5")
    assert "SIGUSR1" in run.attrs["failure"] and run.attrs["finished"] is False
    assert len(run.train) > 0


def _slurmstepd_running(job: str) -> bool:
    """Whether a slurmstepd of `job` (its batch script or a step; it names itself "slurmstepd:
    [JOB.batch]", "[JOB.0]", ...) still runs on this one-node cluster."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        if text.startswith(b"slurmstepd:") and f"[{job}.".encode() in text:
            return True
    return False


def test_usr1_requeues_the_job_and_the_run_resumes(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    """Preemption: USR1 to the batch shell mid-run; the job requeues itself, the requeued job resumes the
    run from its newest checkpoint and finishes; every table continues without a gap or a duplicate."""
    reason = _resume_unavailable()
    if reason:
        pytest.skip(reason)
    log = tmp_path / "job.out"
    run_dir = tmp_path / "run"
    args = [str(CONFIGS / "cartpole.yaml"), str(run_dir), "schedule.mode=sync", "--steps", "6000",
            "schedule.steps_per_generation=1000", "ppo.num_envs=4", "ppo.rollout_steps=256",
            "evaluation.baseline_episodes=4"]
    job = _submit(slurm_cluster, "train.sbatch", args, log, MPIMARL_MAX_RESTARTS="2")
    deadline = time.monotonic() + 150
    while True:  # follow the live run file until a few generations are recorded
        assert time.monotonic() < deadline, log.read_text()
        try:
            if load_run(run_dir / "run.h5").pool["version"].max() >= 2:
                break
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(1)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True, env=slurm_cluster.env(), timeout=30)
    wait_for(slurm_cluster, job, lambda i: i.get("Restarts") == "1", 90, "the requeue")

    # A requeued job waits about two minutes before it may start again: SLURM's rule, not ours. The
    # test shortens it with `scontrol update StartTime=now` while the job is pending, repeated until
    # the requeued batch shell's own line is in the log (SLURM appends a requeued job's output; no job
    # state means "started again": on the way through the requeue the job shows states that look
    # final or running, and stopping the updates on one left the job to SLURM's two minutes, 0.1 s
    # past the deadline below, in stop 30's CI and a rehearsal). But not too soon: slurmd revokes the
    # killed first run's credential, and a relaunch of the same job id within about the same second
    # is refused ("Job N already killed, do not launch batch job"; the job then FAILED in a later
    # rehearsal). So the updates start 3 s after the first run's last slurmstepd has exited.
    states: list[str] = []
    quiet_since: list[float] = []

    def restarted(info: dict[str, str]) -> bool:
        if "resuming from its newest checkpoint" in log.read_text():
            return True
        state = info.get("JobState", "?")
        if not states or states[-1] != state:
            states.append(state)
        if _slurmstepd_running(job):
            quiet_since.clear()
        elif not quiet_since:
            quiet_since.append(time.monotonic())
        if state == "PENDING" and quiet_since and time.monotonic() - quiet_since[0] >= 3:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm_cluster.env(),
                           capture_output=True, timeout=30)
        time.sleep(1)
        return False

    # Longer than SLURM's own two minutes, so that the job starts within it even if no update takes.
    wait_for(slurm_cluster, job, restarted, 180, "the restart of the requeued job")

    # The race that used to fail a resumed run at its very end: the first run's aborted step 0 ends
    # after the requeued job's step has started, and its slurmstepd removes the PMI2 socket path
    # JOB.0, which a requeued step 0 shares; MPI_Finalize's PMI fence then fails ("failed to send
    # temp kvs to compute nodes"). Play the late clean-up: once the resumed run's step has its
    # socket, remove JOB.0's (slurm/job.sh launches restart K as step K, so it is not the run's).
    spool = slurm_cluster.root / "spool"
    deadline = time.monotonic() + 120
    while not list(spool.glob(f"sock.pmi2.{job}.*")):
        assert time.monotonic() < deadline, f"the resumed run's step never started ({states}):\n{log.read_text()}"
        time.sleep(0.5)
    (spool / f"sock.pmi2.{job}.0").unlink(missing_ok=True)
    info = wait_for(slurm_cluster, job, _finished, 300, "the end of the resumed job")
    text = log.read_text()
    assert info["JobState"] == "COMPLETED", text
    assert "requeueing job" in text and "resuming from its newest checkpoint" in text
    run = load_run(run_dir / "run.h5")
    assert run.attrs["finished"] is True
    for _, rows in run.pool.groupby("policy_id"):
        assert list(rows["version"]) == list(range(len(rows))), "pool versions have a gap or a duplicate"
    for _, rows in run.train.groupby("rank"):
        steps = rows["env_steps"].to_numpy()
        assert (steps[1:] > steps[:-1]).all(), "train rows repeat or go back after the resume"
    assert run.pool.groupby("policy_id")["env_steps"].max().min() >= 6000


def test_a_rank_that_dies_ends_the_allocation(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    """A trainer that exits without MPI's clean-up (MPIMARL_FAULT=2:training:exit) ends every task at once
    (srun --kill-on-bad-exit): the job fails within seconds instead of holding its nodes."""
    log = tmp_path / "job.out"
    job = _submit(slurm_cluster, "train.sbatch",
                  [str(CONFIGS / "cartpole.yaml"), str(tmp_path / "run"), "--steps", "100000000"], log,
                  MPIMARL_FAULT="2:training:exit")
    info = wait_for(slurm_cluster, job, _finished, 150, "the end of the job")
    text = log.read_text()
    assert info["JobState"] == "FAILED", (info, text)
    found = re.search(r"injecting fault 'exit' in phase training at ([0-9.]+)", text)
    assert found, text
    ended = time.mktime(time.strptime(info["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    assert ended - float(found[1]) < 11, f"the job ended {ended - float(found[1]):.0f} s after the fault"
    assert "task 2" in text and "exit code 3" in text, text


def test_sweep_runs_one_array_task_per_config_and_seed(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    """sweep.sbatch as a 2-task array (one config, seeds 4 and 5): each task trains its own seed in
    its own run folder."""
    log = tmp_path / "sweep-%a.out"
    _submit(slurm_cluster, "sweep.sbatch", ["4-5", str(CONFIGS / "cartpole.yaml"), "--", *TINY], log,
            "--array=0-1", MPIMARL_SWEEP_ROOT=str(tmp_path / "sweep"))
    deadline = time.monotonic() + 240
    runs = [tmp_path / "sweep" / f"cartpole-seed{s}" / "run.h5" for s in (4, 5)]
    while True:
        done = []
        for path in runs:
            try:
                done.append(load_run(path).attrs["finished"] is True)
            except Exception:  # noqa: BLE001 - not there yet, or still being written
                done.append(False)
        if all(done):
            break
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text() for p in tmp_path.glob("sweep-*.out"))
            pytest.fail(f"the sweep did not finish within 240 s:\n{logs}")
        time.sleep(1)
    assert [load_run(p).config["seed"] for p in runs] == [4, 5]
    assert os.path.exists(tmp_path / "sweep-0.out") and "seed 4" in (tmp_path / "sweep-0.out").read_text()
