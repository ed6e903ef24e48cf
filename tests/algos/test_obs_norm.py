"""Observation normalisation (ppo.obs_norm): running statistics that travel inside the weights."""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

from mpimarl.algos.data_parallel import feature_moments
from mpimarl.algos.networks import ActorCritic, FrozenPolicy, PolicyShape, RunningNorm, flat_weights
from mpimarl.algos.ppo import PPOLearner
from mpimarl.config import PPOConfig

BOX = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_running_norm_matches_the_moments_of_all_batches_seen() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal([5.0, -3.0, 0.0], [10.0, 0.1, 1.0], size=(3000, 3))
    norm = RunningNorm(3)
    for chunk in np.array_split(data, 7):
        norm.update_moments(*feature_moments(chunk))
    np.testing.assert_allclose(norm.mean.detach().numpy(), data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.detach().numpy(), data.var(0), rtol=1e-4)
    out = norm(torch.from_numpy(data.astype(np.float32))).numpy()
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-3)
    assert np.abs(norm(torch.full((1, 3), 1e6)).numpy()).max() == 10.0  # clipped


def test_statistics_are_in_the_flat_buffer_and_a_snapshot_acts_the_same() -> None:
    shape = PolicyShape(3, BOX, (8,), "tanh", obs_norm=True)
    assert shape.layout.endswith("/obsnorm") and not PolicyShape(3, BOX, (8,), "tanh").layout.endswith("/obsnorm")
    net = ActorCritic(shape)
    assert net.obs_norm is not None
    net.obs_norm.update_moments(10, np.array([1.0, 2.0, 3.0]), np.array([4.0, 9.0, 16.0]))
    frozen = FrozenPolicy(shape, flat_weights(net), torch.device("cpu"), greedy=True)
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    own = net.act(torch.from_numpy(obs), None, greedy=True)[0].detach().numpy()
    np.testing.assert_array_equal(frozen.act(obs, None), own)
    np.testing.assert_allclose(frozen.net.obs_norm.mean.detach().numpy(), [1.0, 2.0, 3.0])


def _filled_learner(epochs: int, minibatches: int) -> PPOLearner:
    """A learner with observation normalisation whose rollout holds 64 complete steps far from the
    statistics' starting point (mean 0, variance 1)."""
    shape = PolicyShape(3, BOX, (8,), "tanh", critic_input=4, obs_norm=True)
    cfg = PPOConfig(num_envs=1, rollout_steps=64, minibatches=minibatches, epochs=epochs, hidden=[8], obs_norm=True)
    learner = PPOLearner(shape, cfg, torch.device("cpu"), seed=0)
    rng = np.random.default_rng(2)
    ro = learner.rollout
    for _ in range(65):
        obs = (rng.normal(size=(1, 3)) * 5 + 7).astype(np.float32)
        crit = (rng.normal(size=(1, 4)) * 3 - 2).astype(np.float32)
        act, logp, value = learner.act(obs, None, crit)
        ro.add([0], obs, None, act, logp, value, crit)
        ro.add_reward(0, 1.0)
    return learner


def test_learner_folds_the_rollout_in_after_the_update_and_never_trains_the_statistics() -> None:
    learner = _filled_learner(epochs=2, minibatches=2)
    ro = learner.rollout
    complete = ro.obs[:64].copy(), ro.critic_in[:64].copy()
    learner.update(0.0)
    net = learner.net
    np.testing.assert_allclose(net.obs_norm.mean.detach().numpy(), complete[0].mean(0), rtol=1e-4)
    np.testing.assert_allclose(net.critic_norm.var.detach().numpy(), complete[1].var(0), rtol=1e-3)
    optimised = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    assert id(net.obs_norm.mean) not in optimised and id(net.log_std) in optimised
    # One pass over one minibatch scores the rollout before any step: with the statistics the policy
    # acted with, the ratio is exactly 1 (KL 0); folded in before the update it would not be (5e-5 here).
    assert _filled_learner(epochs=1, minibatches=1).update(0.0).approx_kl == 0.0
