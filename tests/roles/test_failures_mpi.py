"""Faults in real runs under `mpiexec -n 3`: every failure ends the whole job promptly.

A fault is injected with the test-only variable MPIMARL_FAULT=RANK:PHASE:KIND (see
mpimarl/roles/faults.py), or a rank is killed from outside with SIGKILL. Each test checks what a
user relies on: the job ends within 10 s of the fault with a non-zero exit code, a message names the
failing rank, and the run file stays readable (with the failure recorded where rank 0 could).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, REPO, mpiexec

pytestmark = pytest.mark.mpi

PROMPT_S = 10.0
"""A failure must end the job within this many seconds."""
SILENCE_S = 15
"""server.timeout_s of the watchdog tests: longer than a healthy trainer's silences on a loaded
machine. The server's clock starts once every rank has started up (which took 25 s at a load of 15
on 2 cores); after that a healthy cartpole trainer here reports at least every few seconds."""

# Two sync generations of cartpole on 3 ranks (rank 0 server, ranks 1 and 2 trainers).
ARGS = ["train", str(CONFIGS / "cartpole.yaml"), "schedule.mode=sync", "--steps", "2000",
        "schedule.steps_per_generation=1000", "ppo.num_envs=4", "ppo.rollout_steps=256", "ppo.epochs=2",
        "evaluation.baseline_episodes=4", "evaluation.num_envs=4"]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)


def _fault_time(stderr: str) -> float:
    found = re.search(r"injecting fault '\w+' in phase \w+ at ([0-9.]+)", stderr)
    assert found, f"the fault was never reached:\n{stderr}"
    return float(found[1])


def _run_with_fault(spec: str, run_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run to the end under MPIMARL_FAULT=spec; return the result and its end time (unix)."""
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", *ARGS, "--run-dir", str(run_dir), *extra]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO,
                             env=_env(MPIMARL_FAULT=spec))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the job hung after fault {spec}:\n{exc.stderr}")
    return out, time.time()


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["startup", "training", "evaluation", "end"])
@pytest.mark.parametrize("rank", ["0", "1", "last"])
def test_an_exception_on_any_rank_in_any_phase_ends_the_job(rank: str, phase: str, tmp_path: Path) -> None:
    out, ended = _run_with_fault(f"{rank}:{phase}:raise", tmp_path)
    number = 2 if rank == "last" else int(rank)
    assert out.returncode != 0, out.stderr
    assert f"injected fault at rank {number} in phase {phase}" in out.stderr
    assert f"rank {number}" in out.stderr
    assert ended - _fault_time(out.stderr) < PROMPT_S
    run = load_run(tmp_path / "run.h5")  # the run file stays readable whatever failed
    if number == 0 or phase != "end":
        # Rank 0 recorded the failure and closed the file (a trainer that fails after its DONE may
        # find rank 0 already finished, with the run complete).
        assert run.attrs["finished"] is False
        assert f"injected fault at rank {number}" in run.attrs.get("failure", ""), run.attrs


def _rank_pid(tag: str, rank: int, timeout: float = 60) -> int:
    """The process id of MPI rank `rank` of the job whose environment carries MPIMARL_TEST_TAG=tag."""
    deadline = time.monotonic() + timeout
    want = {f"MPIMARL_TEST_TAG={tag}".encode(), f"PMI_RANK={rank}".encode()}
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = set((entry / "environ").read_bytes().split(b"\0"))
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if want <= env and b"mpimarl" in cmdline and b"python" in cmdline:
                return int(entry.name)
        time.sleep(0.2)
    pytest.fail(f"rank {rank} of job {tag} not found")


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 2])
def test_kill_9_of_a_rank_ends_the_job(rank: int, tmp_path: Path) -> None:
    """SIGKILL of the server or of a trainer mid-run: every other rank ends within 10 s."""
    tag = uuid.uuid4().hex
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", *ARGS, "--steps", "10000000",
           "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(MPIMARL_TEST_TAG=tag))
    try:
        assert proc.stdout is not None
        assert "run file" in proc.stdout.readline()  # rank 0 prints this once the run file exists
        time.sleep(3)  # mid-run: trainers are learning and reporting
        os.kill(_rank_pid(tag, rank), signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert elapsed < PROMPT_S, f"the job took {elapsed:.1f} s to end after kill -9 of rank {rank}:\n{err}"
    run = load_run(tmp_path / "run.h5")  # even after kill -9 of its writer
    assert run.attrs["finished"] is False


@pytest.mark.slow
def test_a_stuck_trainer_is_named_by_the_server_watchdog(tmp_path: Path) -> None:
    """A trainer alive but silent from the start (MPIMARL_FAULT=1:startup:hang: it never publishes)
    past server.timeout_s: rank 0 names it and ends the job, although the other trainer waits calmly."""
    out, ended = _run_with_fault("1:startup:hang", tmp_path, f"server.timeout_s={SILENCE_S}")
    assert out.returncode != 0
    assert f"trainer rank 1 (agent-0) sent nothing for {SILENCE_S} s" in out.stderr, out.stderr
    assert ended - _fault_time(out.stderr) < SILENCE_S + PROMPT_S
    run = load_run(tmp_path / "run.h5")
    assert "trainer rank 1" in run.attrs["failure"]


@pytest.mark.slow
def test_a_trainer_waiting_at_the_sync_barrier_for_a_slow_one_is_not_stuck(tmp_path: Path) -> None:
    """Rank 1 sleeps 0.45 x server.timeout_s after each of its 4 PPO updates (rollouts of 256 steps,
    one generation of 1000; MPIMARL_FAULT=1:training:slow:S) but reports every update; rank 2,
    done first, waits silently for the final plan longer than server.timeout_s. Nobody is stuck:
    the run ends well."""
    out, _ = _run_with_fault(f"1:training:slow:{0.45 * SILENCE_S}", tmp_path, f"server.timeout_s={SILENCE_S}",
                             "--steps", "1000")
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["finished"] is True
    published = run.pool[run.pool["version"] == 1].set_index("rank")["time"]
    assert published[1] - published[2] > SILENCE_S, "rank 2 should have waited longer than the timeout"
