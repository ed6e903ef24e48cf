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


# ---- conv torso -------------------------------------------------------------------------------

BOARD = (6, 7, 2)


def _conv_shape(**overrides: object) -> PolicyShape:
    kwargs: dict = dict(obs_shape=BOARD, torso="conv", conv_channels=(8, 16))
    kwargs.update(overrides)
    return PolicyShape(84, gymnasium.spaces.Discrete(7), (32,), "relu", **kwargs)


def test_mlp_layout_is_unchanged_by_the_new_fields() -> None:
    """Run files store MLP layouts; passing the board shape must not rename them."""
    plain = PolicyShape(84, gymnasium.spaces.Discrete(7), (256, 256), "relu")
    with_board = PolicyShape(84, gymnasium.spaces.Discrete(7), (256, 256), "relu", obs_shape=BOARD)
    assert plain.layout == with_board.layout == "mlp/obs=84/hidden=256,256/relu/discrete=7"


def test_conv_layout_names_the_torso_and_never_matches_mlp() -> None:
    conv = PolicyShape(84, gymnasium.spaces.Discrete(7), (256, 256), "relu", obs_shape=BOARD, torso="conv")
    assert conv.layout == "conv/obs=6x7x2/ch=32,64/hidden=256,256/relu/discrete=7"
    assert _conv_shape().layout != _conv_shape(conv_channels=(8, 8)).layout
    mlp = PolicyShape(84, gymnasium.spaces.Discrete(7), (256, 256), "relu", obs_shape=BOARD)
    assert conv.layout != mlp.layout


def test_conv_flat_weights_round_trip_and_refuse_an_mlp() -> None:
    shape = _conv_shape()
    a, b = ActorCritic(shape), ActorCritic(shape)
    load_flat_weights(b, flat_weights(a))
    x = torch.rand(5, 84)
    torch.testing.assert_close(a.actor(x), b.actor(x))
    torch.testing.assert_close(a.value(x), b.value(x))
    mlp = ActorCritic(PolicyShape(84, gymnasium.spaces.Discrete(7), (32,), "relu", obs_shape=BOARD))
    with pytest.raises(ValueError, match="does not fit"):
        load_flat_weights(mlp, flat_weights(a))


def test_conv_trunk_is_shared_and_stored_once() -> None:
    """Actor and critic read one trunk; the buffer holds its weights once, and the one-pass calls
    agree with the separate ones."""
    net = ActorCritic(_conv_shape())
    assert net.actor[0] is net.critic[0]
    trunk = sum(p.numel() for p in net.actor[0].parameters())
    heads = sum(p.numel() for p in net.actor[1].parameters()) + sum(p.numel() for p in net.critic[1].parameters())
    assert flat_weights(net).size == trunk + heads
    obs, mask = torch.rand(16, 84), torch.ones(16, 7, dtype=torch.bool)
    action, logp, value = net.act_with_value(obs, mask, greedy=True)
    greedy_action, greedy_logp = net.act(obs, mask, greedy=True)
    torch.testing.assert_close((action, logp, value), (greedy_action, greedy_logp, net.value(obs)))
    logp2, entropy2, value2 = net.evaluate_with_value(obs, mask, action)
    torch.testing.assert_close((logp2, entropy2, value2), (*net.evaluate(obs, mask, action), net.value(obs)))


def test_conv_reads_the_board_channels_last() -> None:
    """The flat observation is the row-major (H, W, C) board: a piece at (row, col, plane) must
    reach the convolution as channel `plane` at (row, col)."""
    to_channels = ActorCritic(_conv_shape()).actor[0][0]
    board = torch.zeros(1, *BOARD)
    board[0, 5, 3, 1] = 1.0
    chw = to_channels(board.reshape(1, -1))
    assert chw.shape == (1, 2, 6, 7) and chw[0, 1, 5, 3] == 1.0 and chw.sum() == 1.0


def test_conv_masks_respected_and_log_probs_match() -> None:
    net = ActorCritic(_conv_shape())
    obs = torch.rand(128, 84)
    mask = torch.zeros(128, 7, dtype=torch.bool)
    mask[:, [0, 6]] = True
    action, logp = net.act(obs, mask)
    assert set(action.tolist()) <= {0, 6}
    logp2, entropy = net.evaluate(obs, mask, action)
    torch.testing.assert_close(logp, logp2)
    assert net.value(obs).shape == (128,) and (entropy > 0).all()


@pytest.mark.parametrize("obs_shape", [(), (84,), (6, 14), (6, 7, 3)])
def test_conv_needs_a_matching_3d_observation(obs_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="torso 'conv' needs a 3-D") as info:
        _conv_shape(obs_shape=obs_shape)
    assert (str(obs_shape) if obs_shape else "unknown") in str(info.value)


def test_unknown_torso_is_refused() -> None:
    with pytest.raises(ValueError, match="torso must be one of"):
        _conv_shape(torso="transformer")


def test_conv_policy_plays_connect_four_legally() -> None:
    """Shape from the real env's spec; every sampled move of a whole game is legal."""
    from mpimarl.envs import RoleRule, build_env_spec, resolve_env

    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    role = build_env_spec(factory, [RoleRule("player", "player_.*", team=False)]).roles["player"]
    assert role.obs_shape == BOARD
    shape = PolicyShape(role.obs_size, role.action_space, (32,), "relu", obs_shape=role.obs_shape,
                        torso="conv", conv_channels=(8,))
    policy = FrozenPolicy(shape, flat_weights(ActorCritic(shape)), torch.device("cpu"))
    env = factory()
    for seed in range(3):
        env.reset(seed=seed)
        while env.acting_agents():
            (agent,) = env.acting_agents()
            obs, mask = env.observe(agent)
            (action,) = policy.act(obs[None], mask[None])
            assert mask[action]
            env.step({agent: int(action)})
    env.close()


BOARD = (6, 7, 2)
SHAPES = {
    "mlp discrete": PolicyShape(84, gymnasium.spaces.Discrete(7), (64, 32), "tanh"),
    "mlp box": PolicyShape(17, gymnasium.spaces.Box(-1, 1, (6,)), (64, 64), "tanh"),
    "conv": PolicyShape(84, gymnasium.spaces.Discrete(7), (128,), "relu", obs_shape=BOARD, torso="conv",
                        conv_channels=(16, 32)),
    "conv central": PolicyShape(84, gymnasium.spaces.Discrete(7), (64,), "relu", obs_shape=BOARD, torso="conv",
                                conv_channels=(8,), critic_input=30),
    "mlp central (COMA)": PolicyShape(18, gymnasium.spaces.Discrete(5), (64, 64), "relu", critic_input=85,
                                      critic_outputs=5),
    "mlp box, obs norm": PolicyShape(17, gymnasium.spaces.Box(-1, 1, (3,)), (32,), "tanh", obs_norm=True),
    "mlp central, obs norm": PolicyShape(18, gymnasium.spaces.Discrete(5), (32,), "tanh", critic_input=40,
                                         obs_norm=True),
    "conv, obs norm": PolicyShape(84, gymnasium.spaces.Discrete(7), (16,), "relu", obs_shape=BOARD, torso="conv",
                                  conv_channels=(4, 4), obs_norm=True),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_shape_counts_the_networks_weights_without_building_it(name: str) -> None:
    """PolicyShape.num_weights (torch-free, for the start-up checks) is the flat buffer's length."""
    shape = SHAPES[name]
    assert shape.num_weights == flat_weights(ActorCritic(shape)).size
