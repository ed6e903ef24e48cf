"""Networks, flat weight buffers and the random baseline."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from mpimarl.algos.networks import ActorCritic, FrozenPolicy, PolicyShape, RandomPolicy, flat_weights, load_flat_weights


def test_flat_weights_round_trip_and_size_check() -> None:
    """Weights travel as one float32 vector and load into an identical network only."""
    shape = PolicyShape(5, gymnasium.spaces.Discrete(3), (16, 16), "tanh")
    a, b = ActorCritic(shape), ActorCritic(shape)
    w = flat_weights(a)
    assert w.dtype == np.float32 and w.ndim == 1
    load_flat_weights(b, w)
    x = torch.randn(4, 5)
    torch.testing.assert_close(a.actor(x), b.actor(x))
    other = ActorCritic(PolicyShape(5, gymnasium.spaces.Discrete(4), (16, 16), "tanh"))
    with pytest.raises(ValueError, match="does not fit"):
        load_flat_weights(other, w)
    with pytest.raises(ValueError, match="does not fit"):
        load_flat_weights(b, w.astype(np.float64))


def test_masked_actions_are_never_chosen() -> None:
    """Learner, frozen and random policies only pick legal actions."""
    shape = PolicyShape(4, gymnasium.spaces.Discrete(7), (8,), "relu")
    net = ActorCritic(shape)
    mask = np.zeros((256, 7), bool)
    mask[:, [1, 5]] = True
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    actions, logp = net.act(torch.from_numpy(obs), torch.from_numpy(mask))
    assert set(actions.tolist()) <= {1, 5} and torch.isfinite(logp).all()
    frozen = FrozenPolicy(shape, flat_weights(net), torch.device("cpu"))
    assert set(frozen.act(obs, mask).tolist()) <= {1, 5}
    rand = RandomPolicy(shape.action_space, np.random.default_rng(0)).act(obs, mask)
    assert set(rand.tolist()) == {1, 5}


def test_sampled_log_probs_match_evaluate() -> None:
    """The log-probability recorded when acting equals the one the loss recomputes."""
    for space in (gymnasium.spaces.Discrete(5), gymnasium.spaces.Box(-1, 1, (2,), np.float32)):
        net = ActorCritic(PolicyShape(3, space, (8,), "tanh"))
        obs = torch.randn(64, 3)
        action, logp = net.act(obs, None)
        logp2, entropy = net.evaluate(obs, None, action)
        torch.testing.assert_close(logp, logp2)
        assert (entropy > 0).all()
