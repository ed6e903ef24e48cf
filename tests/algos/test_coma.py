"""COMA's counterfactual advantage and TD(lambda) targets against hand-computed examples; value
normalisation; the centralised critic's layout."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from mpimarl.algos.coma import JointActions, counterfactual_advantage
from mpimarl.algos.networks import FrozenPolicy, PolicyShape, flat_weights
from mpimarl.algos.ppo import PPOLearner
from mpimarl.algos.value_norm import ValueNormalizer
from mpimarl.config import PPOConfig


def test_counterfactual_advantage_by_hand() -> None:
    """A = Q(s,u) - sum_u' pi(u') Q(s,u'): 3 - (0.2*1 + 0.3*2 + 0.5*3) = 0.7; 0 - (0.5*4 + 0.5*0) = -2."""
    q = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, -2.0]])
    pi = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    adv = counterfactual_advantage(q, pi, torch.tensor([2, 1]))
    np.testing.assert_allclose(adv.numpy(), [0.7, -2.0], atol=1e-6)


def test_joint_actions_encode_the_others_only() -> None:
    """Agent b's input holds a's and c's actions one-hot, in agent order, and nothing of its own."""
    joint = JointActions(["a", "b", "c"], {"a": 3, "b": 2, "c": 2})
    assert joint.others_size("b") == 5 and joint.others_size("a") == 4
    np.testing.assert_array_equal(joint.encode("b", {"a": 1, "b": 0, "c": 1}), [0, 1, 0, 0, 1])
    # An agent that did not act this tick (turn-based games) contributes zeros.
    np.testing.assert_array_equal(joint.encode("a", {"a": 2, "b": 1}), [0, 1, 0, 0])


def _coma_learner(gamma: float, lam: float) -> PPOLearner:
    """Discrete(2) agent; critic input = 1 state value + the other agent's action one-hot (2)."""
    torch.set_num_threads(1)
    shape = PolicyShape(2, gymnasium.spaces.Discrete(2), (8,), "tanh", critic_input=3, critic_outputs=2)
    cfg = PPOConfig(num_envs=1, rollout_steps=16, gamma=gamma, gae_lambda=lam)
    learner = PPOLearner(shape, cfg, torch.device("cpu"), seed=0, advantage="coma", others_size=2)
    # A hand-set linear critic Q = W x and a state-independent policy pi = (0.2, 0.8).
    critic = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, -1.0]]))
    learner.net.critic = critic
    last = learner.net.actor[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.log(torch.tensor([0.2, 0.8])))
    return learner


def test_coma_td_lambda_targets_and_advantages_by_hand() -> None:
    """Three steps of one agent, then the episode terminates.

    critic inputs x_t = [1, 1,0], [1, 0,1], [1, 1,0] give Q_t = W x_t = (1, 1.5), (3, -0.5), (1, 1.5);
    actions 0, 1, 1 take q = 1, -0.5, 1.5; rewards 1, 0, 2; gamma = lambda = 0.5.
    TD(lambda): G_2 = 2; G_1 = 0 + 0.5 (0.5 * 1.5 + 0.5 * 2) = 0.875;
    G_0 = 1 + 0.5 (0.5 * -0.5 + 0.5 * 0.875) = 1.09375.
    Counterfactual: A_0 = 1 - (0.2 + 1.2) = -0.4; A_1 = -0.5 - (0.6 - 0.4) = -0.7; A_2 = 1.5 - 1.4 = 0.1.
    """
    learner = _coma_learner(0.5, 0.5)
    ro = learner.rollout
    inputs = [[1, 1, 0], [1, 0, 1], [1, 1, 0]]
    for x, a, r in zip(inputs, [0, 1, 1], [1.0, 0.0, 2.0]):
        ro.add(["s"], np.zeros((1, 2), np.float32), None, np.array([a]), np.zeros(1, np.float32),
               np.zeros(1, np.float32), np.array([x], np.float32))
        ro.add_reward("s", r)
    ro.end("s", None)
    idx, adv, returns, q_taken = learner.advantages()
    np.testing.assert_array_equal(idx, [0, 1, 2])
    np.testing.assert_allclose(q_taken, [1.0, -0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(returns, [1.09375, 0.875, 2.0], atol=1e-6)
    np.testing.assert_allclose(adv, [-0.4, -0.7, 0.1], atol=1e-6)


def test_coma_truncation_bootstraps_from_the_expected_q() -> None:
    """A cut episode bootstraps from V = sum_u pi(u) Q(s_T, (u_-a, u)), with the others' last actions."""
    learner = _coma_learner(0.5, 0.5)
    ro = learner.rollout
    ro.add(["s"], np.zeros((1, 2), np.float32), None, np.array([0]), np.zeros(1, np.float32),
           np.zeros(1, np.float32), np.array([[1, 0, 1]], np.float32))
    # The final state part is 2.0; the others' last action (one-hot [0, 1]) comes from the open transition:
    # Q = W [2, 0, 1] = (4, 0); V = 0.2 * 4 + 0.8 * 0 = 0.8.
    v = learner.bootstrap(["s"], np.zeros((1, 2), np.float32), np.array([[2.0]], np.float32))
    np.testing.assert_allclose(v, [0.8], atol=1e-6)


def test_coma_update_runs_on_a_rollout_with_value_normalisation() -> None:
    """A full COMA update (value normalisation on) over several episodes: finite losses, every sample used,
    and the normaliser has taken in the update's TD(lambda) targets (the critic learns in its units)."""
    torch.set_num_threads(1)
    shape = PolicyShape(4, gymnasium.spaces.Discrete(3), (32,), "tanh", critic_input=6, critic_outputs=3)
    cfg = PPOConfig(num_envs=1, rollout_steps=64, epochs=20, minibatches=2, learning_rate=3e-3, value_norm=True)
    learner = PPOLearner(shape, cfg, torch.device("cpu"), seed=0, advantage="coma", others_size=3)
    rng = np.random.default_rng(0)
    ro = learner.rollout
    for t in range(80):
        x = np.concatenate([rng.normal(size=3), np.eye(3)[rng.integers(3)]]).astype(np.float32)[None]
        ro.add(["s"], rng.normal(size=(1, 4)).astype(np.float32), None, rng.integers(3, size=1),
               np.full(1, np.log(1 / 3), np.float32), np.zeros(1, np.float32), x)
        ro.add_reward("s", float(x[0, 0]))
        if t % 10 == 9:
            ro.end("s", None)
    _, _, returns, _ = learner.advantages()
    assert learner.value_norm is not None and learner.value_norm.count < 1e-3
    stats = learner.update(0.0)
    assert np.isfinite([stats.policy_loss, stats.value_loss, stats.entropy]).all()
    assert stats.samples == 80
    assert learner.value_norm.count == pytest.approx(80, abs=1e-3)
    assert learner.value_norm.mean == pytest.approx(float(returns.mean()), rel=1e-4)
    assert learner.value_norm.std == pytest.approx(float(returns.std()), rel=1e-3)


def test_value_normalizer_tracks_mean_and_std() -> None:
    """Batches folded in one by one give the statistics of all values at once."""
    rng = np.random.default_rng(1)
    data = rng.normal(5.0, 3.0, size=1000)
    norm = ValueNormalizer()
    for chunk in np.split(data, 10):
        norm.update(chunk)
    assert norm.mean == pytest.approx(data.mean(), rel=1e-4)
    assert norm.std == pytest.approx(data.std(), rel=1e-3)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(data[:5])), data[:5], rtol=1e-5)


def test_central_critic_layout_names_its_input_and_snapshots_act_from_observations() -> None:
    """The layout string names the critic input; a frozen snapshot of the buffer acts on observations."""
    space = gymnasium.spaces.Discrete(5)
    local = PolicyShape(18, space, (16,), "tanh")
    central = PolicyShape(18, space, (16,), "tanh", critic_input=75)
    coma = PolicyShape(18, space, (16,), "tanh", critic_input=85, critic_outputs=5)
    assert local.layout == "mlp/obs=18/hidden=16/tanh/discrete=5"
    assert central.layout.endswith("/critic=75x1") and coma.layout.endswith("/critic=85x5")
    learner = PPOLearner(coma, PPOConfig(), torch.device("cpu"), seed=0, advantage="coma", others_size=10)
    frozen = FrozenPolicy(coma, flat_weights(learner.net), torch.device("cpu"))
    actions = frozen.act(np.zeros((7, 18), np.float32), None)
    assert actions.shape == (7,) and set(actions.tolist()) <= set(range(5))
