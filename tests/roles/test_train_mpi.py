"""End-to-end runs under `mpiexec -n 3`, started the way users start them.

Each test launches real ranks in a subprocess with a timeout, then reads the run file back with
`mpimarl.analysis.load_run`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, assert_same_runs, run_mpi

pytestmark = pytest.mark.mpi

SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=6",
         "evaluation.pool_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4"]

EXPECTED_ROLES = {
    "connect_four_league": {"player"},
    "simple_tag_roles": {"predator", "prey"},
    "simple_spread_team": {"agent"},
    "speaker_listener_team": {"speaker", "listener"},
    "cartpole": {"agent"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_ROLES))
def test_each_config_produces_a_readable_run(name: str, tmp_path: Path) -> None:
    """A short run of every shipped config records all four tables with the roles expected."""
    out = run_mpi(3, ["train", str(CONFIGS / f"{name}.yaml"), "--run-dir", str(tmp_path), *SHORT])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    roles = EXPECTED_ROLES[name]
    assert set(run.train["role"]) == roles
    assert set(run.pool["role"]) == roles
    assert run.attrs["world_size"] == 3
    assert run.config["name"] == name
    # Every rank says where it ran (no GPU here: the CPU) and with which libraries.
    ranks = run.ranks()
    assert list(ranks["rank"]) == [0, 1, 2] and list(ranks["host"]) == run.attrs["hosts"]
    assert set(ranks["device"]) == {"cpu"} and ranks["torch"].notna().all()
    assert ranks["mpi_library"].str.contains("MPI").all() and (ranks["torch_threads"] >= 1).all()
    # Both trainers reached their step budget and published versions 0, 1, 2.
    assert sorted(run.pool.groupby("policy_id")["version"].max().unique()) == [2]
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 3000).all()
    # Evaluation matches are kept apart from training tallies and cover the random baseline.
    evals = run.matches[run.matches["kind"] == "evaluation"]
    assert len(evals) > 0 and (run.matches["kind"] == "training").any()
    assert "random" in set(evals["opponent_id"])
    assert set(run.ratings["role"]) == roles
    assert np.isfinite(run.ratings["elo"]).all()
    # Weights are stored as arrays and load back for every snapshot.
    for row in run.pool.itertuples():
        w = run.weights(row.policy_id, row.version)
        assert w.dtype == np.float32 and w.ndim == 1 and np.isfinite(w).all()
    assert "Run file:" in out.stdout and "policy_id" in out.stdout


@pytest.mark.slow
def test_sync_schedule_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    """Two sync runs with the same seed and world size record the same learning, matches, ratings, pool,
    payoffs and meta-strategies, and the same weights in every snapshot."""
    runs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        out = run_mpi(3, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(d), "--seed", "7",
                          *SHORT])
        assert out.returncode == 0, out.stderr
        runs.append(load_run(d / "run.h5"))
    assert len(runs[0].pool) >= 6  # two policies, three snapshots each
    assert_same_runs(*runs)


@pytest.mark.slow
def test_async_schedule_with_two_roles(tmp_path: Path) -> None:
    """Async, asymmetric roles: each role trains against the other role's pool; no trainer waits for a plan."""
    out = run_mpi(3, ["train", str(CONFIGS / "simple_tag_roles.yaml"), "--run-dir", str(tmp_path),
                      "schedule.mode=async", "--seed", "1", *SHORT])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.config["schedule"]["mode"] == "async"
    assert len(run.pool) == 6
    assert run.attrs["finished"] is True
    training = run.matches[run.matches.kind == "training"]
    predator = training[training.role == "predator"]
    assert set(predator.opponent_role) == {"prey"} and set(predator.opponent_id) <= {"prey-0"}


def test_bad_key_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    """An unknown config key names the nearest valid key; exit code 2, no traceback, no hang."""
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), "ppo.learning_rat=0.1"])
    assert out.returncode == 2
    assert "learning_rate" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("mpimarl: error:") == 1
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.slow
def test_wrong_type_and_unknown_env_are_named(tmp_path: Path) -> None:
    """A wrongly typed value names the key; an unknown environment names the id."""
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "ppo.epochs=many"])
    assert out.returncode == 2 and "ppo.epochs" in out.stderr and "Traceback" not in out.stderr
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "env.id=pettingzoo.classic.connect_five_v9"])
    assert out.returncode == 2 and "connect_five_v9" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("n,config", [(1, "cartpole"), (2, "simple_tag_roles")])
def test_impossible_world_size_is_refused(n: int, config: str, tmp_path: Path) -> None:
    """One rank, or fewer trainers than roles, is refused before any work."""
    out = run_mpi(n, ["train", str(CONFIGS / f"{config}.yaml"), "--run-dir", str(tmp_path)])
    assert out.returncode == 2
    assert "world size" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run.h5").exists()


def test_unwritable_run_dir_is_refused(tmp_path: Path) -> None:
    """A run folder that cannot be created names the path and exits 2 on every rank."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(blocker / "sub")])
    assert out.returncode == 2
    assert str(blocker / "sub") in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_existing_run_file_is_not_overwritten(tmp_path: Path) -> None:
    """A second run into the same folder refuses instead of destroying what was recorded."""
    args = ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), *SHORT]
    assert run_mpi(3, args).returncode == 0
    before = load_run(tmp_path / "run.h5")
    out = run_mpi(3, args)
    assert out.returncode == 2 and "already exists" in out.stderr
    after = load_run(tmp_path / "run.h5")
    assert len(after.train) == len(before.train)


@pytest.mark.slow
def test_a_failing_trainer_ends_the_job_and_keeps_the_run_file(tmp_path: Path) -> None:
    """An exception on rank 2 mid-run aborts every rank promptly; rows recorded so far stay readable."""
    t0 = time.monotonic()
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path),
                      "env.id=tests.fixtures.failing_env:make", "env.kwargs={fail_after: 3000, fail_rank: 2}",
                      "--steps", "100000", "schedule.steps_per_generation=1000", "ppo.num_envs=4",
                      "ppo.rollout_steps=256", "evaluation.baseline_episodes=4"], timeout=120)
    elapsed = time.monotonic() - t0
    assert out.returncode != 0
    assert "injected failure on rank 2" in out.stderr
    assert elapsed < 60
    run = load_run(tmp_path / "run.h5")
    assert len(run.train) > 0 and set(run.train["rank"]) >= {1}
    # Rank 0 learned of the failure, recorded it and closed the file before the job ended.
    assert "injected failure on rank 2" in run.attrs["failure"]
    assert run.attrs["finished"] is False


def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    """trainer.device=cuda on a machine without CUDA names the setting and ends the job with code 2."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), "trainer.device=cuda"],
                  timeout=120)
    assert out.returncode == 2
    assert "trainer.device is 'cuda'" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.glob("*.h5")), "the start-up check comes before the run file is created"


@pytest.mark.slow
def test_sigterm_ends_the_job_and_records_why(tmp_path: Path) -> None:
    """SIGTERM to mpiexec (a SLURM time limit, a Ctrl-C) ends every rank; the run file says why."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO, mpiexec

    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", "train", str(CONFIGS / "cartpole.yaml"),
           "--run-dir", str(tmp_path), "--steps", "10000000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()  # rank 0 prints this once the run file exists
        assert "run file" in header
        time.sleep(4)  # let a few PPO updates land in the file
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    run = load_run(tmp_path / "run.h5")
    assert "SIGTERM" in run.attrs["failure"] and run.attrs["finished"] is False
    assert len(run.train) > 0
