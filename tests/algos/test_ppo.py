"""PPO pieces without MPI: stream rollouts, GAE, and a short real learning run."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from mpimarl.algos.networks import PolicyShape
from mpimarl.algos.ppo import PPOLearner, StreamRollout, compute_gae
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.rollout.runner import LEARNER, VectorMatches

SHAPE = PolicyShape(3, gymnasium.spaces.Discrete(2), (8,), "tanh")


def _reference_gae(rewards: list[float], values: list[float], last_value: float, done_at_end: bool,
                   gamma: float, lam: float) -> np.ndarray:
    """Textbook GAE for one uninterrupted trajectory."""
    n = len(rewards)
    adv = np.zeros(n)
    last = 0.0
    for t in reversed(range(n)):
        next_v = (0.0 if done_at_end else last_value) if t == n - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


def _fill(ro: StreamRollout, stream: str, rewards: list[float], values: list[float]) -> None:
    for r, v in zip(rewards, values):
        ro.add([stream], np.zeros((1, 3), np.float32), np.ones((1, 2), bool), np.zeros(1, np.int64),
               np.zeros(1, np.float32), np.array([v], np.float32))
        ro.add_reward(stream, r)


def test_interleaved_streams_match_textbook_gae() -> None:
    """Two agents acting in turns (as in an AEC game) get the GAE of their own trajectories."""
    rng = np.random.default_rng(0)
    ra, va = rng.normal(size=5).tolist(), rng.normal(size=5).tolist()
    rb, vb = rng.normal(size=5).tolist(), rng.normal(size=5).tolist()
    ro = StreamRollout(SHAPE, capacity=4)  # also exercises growing
    for t in range(5):
        _fill(ro, "a", [ra[t]], [va[t]])
        _fill(ro, "b", [rb[t]], [vb[t]])
    ro.end("a", None)  # terminated: no bootstrap
    ro.end("b", 0.7)  # truncated: bootstrap from the final observation's value
    n = ro.size
    adv = compute_gae(ro.reward[:n], ro.value[:n], ro.next_value[:n], ro.chain_break[:n], ro.next_index[:n],
                      ro.complete[:n], 0.9, 0.8)
    np.testing.assert_allclose(adv[0::2], _reference_gae(ra, va, 0.0, True, 0.9, 0.8), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv[1::2], _reference_gae(rb, vb, 0.7, False, 0.9, 0.8), rtol=1e-5, atol=1e-6)


def test_open_transitions_carry_over_to_the_next_rollout() -> None:
    """A transition whose agent has not acted again stays open and completes in the next rollout."""
    ro = StreamRollout(SHAPE, capacity=8)
    _fill(ro, "a", [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    assert ro.num_complete == 2 and "a" in ro.pending
    ro.carry_over()
    assert ro.size == 1 and ro.num_complete == 0
    assert ro.value[0] == pytest.approx(0.3) and ro.reward[0] == pytest.approx(3.0)
    ro.add_reward("a", 0.5)
    ro.end("a", None)
    assert ro.num_complete == 1 and ro.reward[0] == pytest.approx(3.5)


@pytest.mark.slow
def test_ppo_learns_cartpole_quickly() -> None:
    """A few thousand CartPole steps take the greedy return well above random (about 22)."""
    torch.set_num_threads(1)
    factory = resolve_env("gymnasium:CartPole-v1", {})
    env = factory()
    shape = PolicyShape(env.obs_size("agent"), env.action_space("agent"), (64, 64), "tanh")
    cfg = PPOConfig(num_envs=8, rollout_steps=256, epochs=10, minibatches=2, learning_rate=1e-3, gamma=0.98,
                    gae_lambda=0.8, ent_coef=0.0)
    learner = PPOLearner(shape, cfg, torch.device("cpu"), seed=3)
    vm = VectorMatches([factory() for _ in range(cfg.num_envs)], seed=3)
    for i in range(cfg.num_envs):
        vm.start(i, {"agent": LEARNER})
    returns: list[float] = []
    while vm.env_steps < 25_000:
        for ep in vm.tick({}, learner):
            returns.append(ep.returns["agent"])
            vm.start(ep.env_index, {"agent": LEARNER})
        if learner.ready:
            learner.update(progress=vm.env_steps / 25_000)
    assert np.mean(returns[:20]) < 40
    assert np.mean(returns[-20:]) > 150, returns[-20:]


def test_reset_gives_the_fresh_learner_of_that_seed() -> None:
    """`reset(seed)` (PSRO's fresh best response) equals a new learner built with that seed: same
    weights, a new optimiser with no moments, an empty rollout."""
    from mpimarl.algos.networks import flat_weights

    cfg = PPOConfig(num_envs=2, rollout_steps=16, minibatches=1, hidden=[8])
    trained = PPOLearner(SHAPE, cfg, torch.device("cpu"), seed=1)
    _fill(trained.rollout, "a", [1.0, 0.0], [0.1, 0.2])
    loss = sum(p.sum() for p in trained.net.parameters())
    trained.optimizer.zero_grad()
    loss.backward()
    trained.optimizer.step()
    trained.reset(5)
    fresh = PPOLearner(SHAPE, cfg, torch.device("cpu"), seed=5)
    np.testing.assert_array_equal(flat_weights(trained.net), flat_weights(fresh.net))
    assert not trained.optimizer.state and trained.rollout.size == 0 and not trained.rollout.pending


def test_entropy_bonus_anneals_to_its_final_value() -> None:
    """ppo.ent_coef_final: the coefficient moves linearly with the learner's progress and stops at the final
    value; without it the coefficient stays ent_coef."""
    annealed = PPOLearner(SHAPE, PPOConfig(ent_coef=0.1, ent_coef_final=0.0, hidden=[8]), torch.device("cpu"), seed=1)
    seen = []
    for progress in (0.0, 0.25, 1.0, 1.5):
        annealed.set_learning_rate(progress)
        seen.append(annealed.ent_coef)
    assert seen == pytest.approx([0.1, 0.075, 0.0, 0.0])
    constant = PPOLearner(SHAPE, PPOConfig(ent_coef=0.1, hidden=[8]), torch.device("cpu"), seed=1)
    constant.set_learning_rate(0.8)
    assert constant.ent_coef == pytest.approx(0.1)


def test_a_reset_learner_anneals_over_each_generation() -> None:
    """With reset_each_generation every generation trains a fresh best response, so annealing restarts at
    each generation's start; otherwise it runs over schedule.total_steps."""
    from mpimarl.config import load_config
    from mpimarl.roles.context import RunContext
    from tests.conftest import CONFIGS

    reset = RunContext.build(load_config(CONFIGS / "kuhn_psro.yaml"), None)
    assert reset.config.ppo.reset_each_generation
    assert reset.learning_progress(steps=150_000, start=100_000, budget=50_000) == pytest.approx(1.0)
    assert reset.learning_progress(steps=125_000, start=100_000, budget=50_000) == pytest.approx(0.5)
    carried = RunContext.build(load_config(CONFIGS / "cartpole.yaml"), None)
    total = carried.config.schedule.total_steps
    assert not carried.config.ppo.reset_each_generation
    assert carried.learning_progress(steps=total // 4, start=total // 5, budget=10) == pytest.approx(0.25, abs=1e-6)
