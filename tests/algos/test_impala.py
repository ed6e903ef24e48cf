"""IMPALA pieces without MPI: trajectory segments, V-trace over chained transitions, the learner."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from mpimarl.algos.impala import (
    VTraceLearner,
    behaviour_size,
    behaviour_weights,
    load_behaviour_weights,
    vtrace_rows,
)
from mpimarl.algos.networks import PolicyShape, flat_weights, load_flat_weights
from mpimarl.algos.ppo import PPOLearner, StreamRollout, compute_gae
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.rollout.segment import SegmentLayout, pack_segment, unpack_segments
from tests.conftest import play_cartpole

SHAPE = PolicyShape(3, gymnasium.spaces.Discrete(2), (8,), "tanh")


def _cartpole_shape() -> PolicyShape:
    env = resolve_env("gymnasium:CartPole-v1", {})()
    return PolicyShape(env.obs_size("agent"), env.action_space("agent"), (16,), "tanh")


def test_a_segment_round_trips_and_carries_open_rows_over() -> None:
    """pack -> unpack returns the rollout's columns; the open rows stay in the rollout for the next segment."""
    shape = _cartpole_shape()
    learner = PPOLearner(shape, PPOConfig(num_envs=4, rollout_steps=64), torch.device("cpu"), seed=1)
    play_cartpole(learner, seed=1, steps=200)
    ro = learner.rollout
    n, pending = ro.size, dict(ro.pending)
    expected = {name: getattr(ro, name)[:n].copy() for name in
                ("obs", "mask", "action", "logp", "reward", "next_value", "next_index", "chain_break", "complete")}
    layout = SegmentLayout.of(shape)
    seg = pack_segment(ro, layout)
    assert seg.shape == (n, layout.width) and seg.dtype == np.float32
    rows = unpack_segments([seg], layout)
    np.testing.assert_array_equal(rows.obs, expected["obs"])
    np.testing.assert_array_equal(rows.mask, expected["mask"])
    np.testing.assert_array_equal(rows.action, expected["action"])
    np.testing.assert_array_equal(rows.behaviour_logp, expected["logp"])
    np.testing.assert_array_equal(rows.reward, expected["reward"])
    np.testing.assert_array_equal(rows.next_index, expected["next_index"])
    np.testing.assert_array_equal(rows.chain_break, expected["chain_break"])
    np.testing.assert_array_equal(rows.complete, expected["complete"])
    assert ro.size == len(pending) == 4 and ro.num_complete == 0  # one open transition per copy remains
    # Two segments concatenated: the second one's successor indices are rebased.
    play_cartpole(learner, seed=2, steps=100)
    seg2 = pack_segment(ro, layout)
    both = unpack_segments([seg, seg2], layout)
    linked = rows.next_index >= 0
    second = both.next_index[n:]
    assert (second[second >= 0] >= n).all() and (both.next_index[:n][linked] < n).all()


def test_on_policy_vtrace_over_chains_is_the_lambda_one_return() -> None:
    """With pi = mu every rho and c is 1: V-trace targets equal GAE(lambda=1) returns of the same
    rows (interleaved streams, a termination, a truncation bootstrap and chains cut at the segment's end)."""
    rng = np.random.default_rng(0)
    ro = StreamRollout(SHAPE, capacity=8)
    values = rng.normal(size=40).astype(np.float32)
    k = 0
    for t in range(6):
        for stream in ("a", "b", "c"):
            if stream == "c" and t == 5:
                continue
            ro.add([stream], rng.normal(size=(1, 3)).astype(np.float32), np.ones((1, 2), bool),
                   np.zeros(1, np.int64), np.full(1, -0.7, np.float32), values[k : k + 1])
            ro.add_reward(stream, float(rng.normal()))
            k += 1
        if t == 2:
            ro.end("a", None)  # terminated; "a" starts a new episode next tick
        if t == 4:
            ro.end("c", 0.4)  # truncated: bootstrap 0.4
    n = ro.size
    gamma = 0.9
    gae = compute_gae(ro.reward[:n], ro.value[:n], ro.next_value[:n], ro.chain_break[:n], ro.next_index[:n],
                      ro.complete[:n], gamma, 1.0)
    idx_gae = np.flatnonzero(ro.complete[:n])
    returns = gae[idx_gae] + ro.value[:n][idx_gae]
    rows = unpack_segments([pack_segment(ro, SegmentLayout.of(SHAPE))], SegmentLayout.of(SHAPE))
    idx, vs, adv = vtrace_rows(rows, rows.behaviour_logp, values[:n], gamma, 1.0, 1.0)
    np.testing.assert_array_equal(idx, idx_gae)
    np.testing.assert_allclose(vs, returns, rtol=1e-5, atol=1e-5)
    # pg advantage r + gamma v_{s+1} - V: inside a chain, the next target; GAE(1) gives the same here.
    np.testing.assert_allclose(adv, gae[idx_gae], rtol=1e-5, atol=1e-5)


def test_off_policy_rows_are_truncated_by_rho_bar() -> None:
    """A target policy far more likely than the behaviour one: rho is cut at rho_bar."""
    ro = StreamRollout(SHAPE, capacity=8)
    for _ in range(4):
        ro.add(["a"], np.zeros((1, 3), np.float32), np.ones((1, 2), bool), np.zeros(1, np.int64),
               np.full(1, np.log(0.1), np.float32), np.zeros(1, np.float32))
        ro.add_reward("a", 1.0)
    ro.end("a", None)
    rows = unpack_segments([pack_segment(ro, SegmentLayout.of(SHAPE))], SegmentLayout.of(SHAPE))
    target = np.full(rows.size, np.log(0.9), np.float32)  # ratio 9
    _, vs, adv = vtrace_rows(rows, target, np.zeros(rows.size, np.float32), 1.0, 2.0, 1.0)
    # values 0, reward 1 per step, c = 1: v_s = rho_bar * (remaining steps) ; advantage rho_bar * (1 + v_{s+1})
    np.testing.assert_allclose(vs, [8.0, 6.0, 4.0, 2.0])
    np.testing.assert_allclose(adv, [2.0 * 7.0, 2.0 * 5.0, 2.0 * 3.0, 2.0])


def test_the_vtrace_learner_trains_on_segments_and_reports_their_lag() -> None:
    """An actor's segments (played with version 0) reach a learner two versions later: lag 2 each,
    and the update moves the weights."""
    torch.set_num_threads(1)
    shape = _cartpole_shape()
    cfg = PPOConfig(num_envs=4, rollout_steps=128, minibatches=2, epochs=2)
    learner = VTraceLearner(shape, cfg, torch.device("cpu"), seed=4, rho_bar=1.0, c_bar=1.0)
    actor = PPOLearner(shape, cfg, torch.device("cpu"), seed=5)
    load_flat_weights(actor.net, flat_weights(learner.net))
    layout = SegmentLayout.of(shape)
    learner.version = 2
    while not learner.ready:
        play_cartpole(actor, seed=learner.queued, steps=70)
        learner.add_segment(pack_segment(actor.rollout, layout), behaviour_version=0, env_steps=70)
    segments = len(learner.queue)
    before = flat_weights(learner.net)
    stats = learner.update(progress=0.0)
    assert stats.samples >= cfg.rollout_steps
    assert learner.last_lags == [2] * segments and learner.version == 3
    assert learner.last_env_steps == 70 * segments and not learner.queue
    assert not np.array_equal(before, flat_weights(learner.net))
    # The targets are computed before the update, with the actor's own weights: every ratio is 1 (a
    # behaviour log-probability read from the wrong column of the segment would not give 1).
    assert learner.last_rho_mean == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("value_norm", "central"), [(True, False), (False, True), (True, True)],
                         ids=["value_norm", "central_critic", "both"])
def test_actors_with_value_norm_or_a_central_critic_give_the_learner_on_policy_targets(
        value_norm: bool, central: bool) -> None:
    """An actor holding the learner's behaviour buffer (weights + value normaliser statistics) plays a
    segment; on-policy, the learner's V-trace(lambda) targets are the actor's own GAE(lambda) returns:
    the centralised critic's input travels in the segment, and both sides read the critic in the
    same (normalised) units. The learner then trains its critic on normalised targets."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    shape = PolicyShape(3, gymnasium.spaces.Discrete(2), (8,), "tanh", critic_input=5 if central else 0)
    cfg = PPOConfig(num_envs=1, rollout_steps=16, minibatches=1, epochs=1, value_norm=value_norm, gae_lambda=0.8)
    learner = VTraceLearner(shape, cfg, torch.device("cpu"), seed=1, lam=0.8)
    if value_norm:
        assert learner.value_norm is not None
        learner.value_norm.update(rng.normal(5.0, 3.0, 200))  # statistics far from the defaults (0, 1)
    actor = PPOLearner(shape, cfg, torch.device("cpu"), seed=2)
    buf = behaviour_weights(learner)
    assert buf.shape == (behaviour_size(learner),) and buf.dtype == np.float32
    load_behaviour_weights(actor, buf)
    mask = np.ones((1, 2), bool)
    for t in range(10):
        for stream in ("a", "b"):
            obs = rng.normal(size=(1, 3)).astype(np.float32)
            state = rng.normal(size=(1, 5)).astype(np.float32) if central else None
            action, logp, value = actor.act(obs, mask, state)
            actor.rollout.add([stream], obs, mask, action, logp, value, state)
            actor.rollout.add_reward(stream, float(rng.normal()))
        if t == 4:
            actor.rollout.end("a", None)  # terminated
        if t == 6:
            actor.rollout.end("b", 1.5)  # truncated: the actor's bootstrap
    _, _, returns, _ = actor.advantages()
    layout = SegmentLayout.of(shape)
    assert layout.critic_size == (5 if central else 0)
    learner.add_segment(pack_segment(actor.rollout, layout), behaviour_version=0)
    batch = learner.prepare_batch()
    np.testing.assert_allclose(batch.returns.numpy(), returns, rtol=1e-4, atol=1e-4)
    assert (batch.critic_in is not None) == central
    if value_norm:
        assert learner.value_norm is not None and learner.value_norm.count > 200  # the batch's targets folded in
        np.testing.assert_allclose(batch.v_target.numpy(), learner.value_norm.normalize(returns), rtol=1e-4, atol=1e-4)
