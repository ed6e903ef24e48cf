"""Learner groups under `mpiexec`: several ranks train one policy (data-parallel PPO).

The group's ranks compare a checksum of their weights every generation and end the job if they
differ, so a group run that finishes has kept its weights identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, assert_same_runs, run_mpi

pytestmark = pytest.mark.mpi

SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=6",
         "evaluation.pool_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4"]


@pytest.mark.slow
def test_two_groups_of_two_train_connect_four(tmp_path: Path) -> None:
    """mpiexec -n 5: the server and two policies of two ranks each finish and record like one-rank policies."""
    out = run_mpi(5, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "trainer.ranks_per_policy=2"])
    assert out.returncode == 0, out.stderr
    assert "player-0 (ranks 1-2)" in out.stdout
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["policy_ranks"] == {"player-0": [1, 2], "player-1": [3, 4]}
    # Only the leaders speak to the server: one train row per group update, from ranks 1 and 3.
    assert set(run.train["rank"]) == {1, 3}
    assert (run.train["learner_ranks"] == 2).all()
    assert set(run.pool["policy_id"]) == {"player-0", "player-1"}
    assert sorted(run.pool.groupby("policy_id")["version"].max().unique()) == [2]
    # env_steps count the steps of both ranks of the group: the policy's budget is reached.
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 3000).all()
    # Training tallies of both ranks arrive as one report per generation and line-up.
    training = run.matches[run.matches["kind"] == "training"]
    assert len(training) > 0 and set(training["rank"]) == {1, 3}
    assert len(run.matches[run.matches["kind"] == "evaluation"]) > 0


@pytest.mark.slow
def test_group_runs_are_deterministic_in_the_sync_schedule(tmp_path: Path) -> None:
    """Same seed twice with a group of two ranks: the same weights of every snapshot, the same rows."""
    runs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(d), "--seed", "5", *SHORT,
                          "trainer.ranks_per_policy=2"])
        assert out.returncode == 0, out.stderr
        runs.append(load_run(d / "run.h5"))
    a, b = runs
    assert len(a.pool) == len(b.pool) == 3
    assert_same_runs(a, b)


@pytest.mark.parametrize(("n", "config", "override", "named"), [
    (4, "connect_four_league", "trainer.ranks_per_policy=2", "the last 1 rank(s) (3..3)"),
    (6, "simple_tag_roles", "trainer.ranks_per_policy={prey: 2}", "a block may not span roles"),
    (3, "connect_four_league", "trainer.ranks_per_policy={plyer: 2}", "unknown roles ['plyer']"),
])
def test_groups_that_do_not_fit_the_ranks_are_refused(n: int, config: str, override: str, named: str,
                                                       tmp_path: Path) -> None:
    """A group size that leaves ranks over (or would span roles) or names no role: exit 2 on every rank."""
    out = run_mpi(n, ["train", str(CONFIGS / f"{config}.yaml"), "--run-dir", str(tmp_path), override])
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("mpimarl: error:") == 1
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.slow
def test_a_group_restarts_each_generation_from_identical_fresh_weights(tmp_path: Path) -> None:
    """kuhn_psro resets every generation (PSRO's fresh best response): both ranks of a group draw the
    same fresh weights, so the per-generation checksum holds and the run finishes."""
    out = run_mpi(5, ["train", str(CONFIGS / "kuhn_psro.yaml"), "--run-dir", str(tmp_path), "--steps", "6000",
                      "schedule.steps_per_generation=2000", "ppo.num_envs=8", "ppo.rollout_steps=512",
                      "evaluation.baseline_episodes=10", "trainer.ranks_per_policy=2",
                      "ppo.epochs=2"])  # not kuhn_psro's 40 passes: the weights, not their quality, are checked
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.config["ppo"]["reset_each_generation"] is True
    assert sorted(run.pool.groupby("policy_id")["version"].max().unique()) == [3]


@pytest.mark.slow
def test_the_straggler_cutoff_ends_a_slow_ranks_rollout(tmp_path: Path) -> None:
    """DD-PPO's cut-off: rank 2 of a group of two steps slowly (a test environment that sleeps there);
    once rank 1 has its whole share, rank 2 stops collecting with its minimum share and the group
    updates on fewer steps than a whole batch. env_steps count what was really collected."""
    batch = 512
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), "--steps", "3000",
                      "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=4", "ppo.num_envs=4",
                      f"ppo.rollout_steps={batch}", "evaluation.num_envs=4", "schedule.mode=async",
                      "env.id=tests.fixtures.slow_env:make", "env.kwargs={slow_rank: 2, delay_s: 0.004}",
                      "trainer.ranks_per_policy=2", "trainer.straggler_cutoff=0.5",
                      "trainer.straggler_min_share=0.25"])
    assert out.returncode == 0, out.stderr
    train = load_run(tmp_path / "run.h5").train
    steps = np.diff(np.concatenate([[0], train["env_steps"].to_numpy()]))
    cut = train["cut_off_ranks"].to_numpy()
    assert cut.max() <= 1  # one rank of the two at most, never the one that finished
    # The cut-off fired (rank 2 sleeps 4 ms a step: it cannot keep up), and those updates learned
    # from what was collected: a whole share (256) from one rank, at least a quarter share from the other.
    assert (cut == 1).sum() >= len(train) // 2
    fired = steps[cut == 1]
    assert (fired < batch).all() and (fired >= batch // 2 + batch // 8).all()
    assert (steps[cut == 0] >= batch).all()
    assert train["env_steps"].iloc[-1] >= 3000


def test_the_straggler_cutoff_is_refused_in_the_sync_schedule(tmp_path: Path) -> None:
    """Sync runs promise determinism; a timing-dependent cut-off there is a start-up error (exit 2)."""
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), "schedule.mode=sync",
                      "trainer.ranks_per_policy=2", "trainer.straggler_cutoff=0.5"])
    assert out.returncode == 2, out.stderr
    assert "trainer.straggler_cutoff" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.slow
def test_a_group_with_value_normalisation_and_a_centralised_critic_trains(tmp_path: Path) -> None:
    """MAPPO (agent-specific state critic, value normalisation) on a group of two: every update also sums
    the returns' moments over the group (one more collective per update on every rank), and the run
    finishes with identical weights on both ranks (the per-generation checksum)."""
    out = run_mpi(3, ["train", str(CONFIGS / "simple_spread_mappo.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "trainer.ranks_per_policy=2"])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.config["ppo"]["value_norm"] is True and (run.train["learner_ranks"] == 2).all()
    assert (run.train["value_loss"] < 5.0).all()  # the critic learns normalised targets
    assert run.pool["version"].max() == 2
