"""Observation normalisation (`ppo.obs_norm`) across ranks: a learner group and IMPALA actors.

The running statistics are part of the policy's flat weights. In a learner group every rank folds in
the moments of the whole group's batch (so the weights stay identical: the group's per-generation
checksum would end the job otherwise); an IMPALA learner folds in its actors' segments and broadcasts
the statistics with the weights, so its actors act (and report behaviour log-probabilities) with the
learner's normalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, run_mpi

pytestmark = pytest.mark.mpi

# Two generations of cartpole, about 512 samples per update (over the learner group, when there is one).
SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=4",
         "evaluation.pool_episodes=2", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4",
         "ppo.obs_norm=true"]
NUM_ENVS = 4


def _normaliser_of_last_snapshot(run_dir: Path) -> tuple[float, np.ndarray, np.ndarray, int]:
    """(count, mean, var) of the newest snapshot's observation normaliser, and the environment steps
    the policy (all its ranks) had taken when it was published."""
    run = load_run(run_dir / "run.h5")
    assert run.config["ppo"]["obs_norm"] is True
    last = run.pool.sort_values("version").iloc[-1]
    policy = run.policy("agent-0", int(last.version))
    norm = policy.net.obs_norm
    assert norm is not None and policy.shape.layout.endswith("/obsnorm")
    return float(norm.count.item()), norm.mean.detach().numpy(), norm.var.detach().numpy(), int(last.env_steps)


@pytest.mark.slow
def test_a_learner_group_normalises_with_the_whole_groups_statistics(tmp_path: Path) -> None:
    """mpiexec -n 3, a group of two ranks: the run finishes (the ranks' weights, statistics included,
    stayed identical), and the stored normaliser has counted both ranks' samples of every update."""
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "trainer.ranks_per_policy=2"])
    assert out.returncode == 0, out.stderr
    count, mean, var, env_steps = _normaliser_of_last_snapshot(tmp_path)
    assert env_steps >= 3000
    # Every step of both ranks but the open one of each copy of the environment (carried over to the
    # next rollout); the leader's batches alone would be about half.
    assert count == env_steps - 2 * NUM_ENVS
    assert np.abs(mean).max() > 1e-3 and not np.allclose(var, 1.0)  # real statistics, not the identity


@pytest.mark.slow
def test_impala_actors_act_with_the_learners_normalisation(tmp_path: Path) -> None:
    """mpiexec -n 3, sync, a learner and one actor: the learner folds in the actor's segments, and the
    actor plays with the statistics it receives in the weights: with no lag, its behaviour policy is
    the learner's, so V-trace's clipped importance ratios stay at 1 (0.9993-1.0 measured, as without
    obs_norm; an actor that kept the identity normalisation measured 0.90-0.99)."""
    out = run_mpi(3, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "schedule.mode=sync", "trainer.actors_per_learner=1"])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert (run.train["policy_lag_max"] == 0).all()
    assert run.train["vtrace_rho_mean"].between(0.995, 1.0).all(), run.train["vtrace_rho_mean"].tolist()
    count, mean, var, env_steps = _normaliser_of_last_snapshot(tmp_path)
    assert 0.9 * env_steps <= count <= env_steps  # the actor's segments of every batch were folded in
    assert np.abs(mean).max() > 1e-3 and not np.allclose(var, 1.0)
