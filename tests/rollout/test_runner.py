"""Vectorised matches on real environments: seating, batched acting, episode accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpimarl.algos.networks import PolicyShape, RandomPolicy
from mpimarl.algos.ppo import PPOLearner
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.envs.spec import RoleRule, build_env_spec
from mpimarl.league.pool import SnapshotKey
from mpimarl.rollout.evaluate import play_episodes
from mpimarl.rollout.runner import LEARNER, VectorMatches
from mpimarl.rollout.seating import SeatedKey, other_seat_roles, random_key, seating, seats_of_role


def _connect_four() -> tuple:
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", False)])
    return factory, spec


def test_seating_fills_other_seats_by_role() -> None:
    """A line-up's snapshots go to the seats of their role; the learner takes its own seat."""
    factory = resolve_env("mpe2.simple_tag_v3", {"continuous_actions": False})
    spec = build_env_spec(factory, [RoleRule("predator", "adversary_.*", True), RoleRule("prey", "agent_.*", True)])
    own = seats_of_role(spec, "prey")[0]
    assert other_seat_roles(spec, own) == ["predator"]
    seat_map = seating(spec, own, LEARNER, (SeatedKey(SnapshotKey("predator-0", 3), "predator"),))
    assert seat_map["agent_0"] == LEARNER
    assert {seat_map[a] for a in ("adversary_0", "adversary_1", "adversary_2")} == {SnapshotKey("predator-0", 3)}


@pytest.mark.slow
def test_turn_based_rollout_credits_both_players() -> None:
    """Learner vs random in connect four: every learner transition completes, returns are +-1/0."""
    torch.set_num_threads(1)
    factory, spec = _connect_four()
    shape = PolicyShape(spec.roles["player"].obs_size, spec.roles["player"].action_space, (16,), "tanh")
    learner = PPOLearner(shape, PPOConfig(num_envs=4, rollout_steps=64), torch.device("cpu"), seed=0)
    vm = VectorMatches([factory() for _ in range(4)], seed=0)
    rand = RandomPolicy(shape.action_space, np.random.default_rng(0))
    policies = {("random", "player"): rand}
    lineup = (random_key("player"),)
    for i in range(4):
        vm.start(i, seating(spec, i % 2, LEARNER, lineup))
    finished = []
    while len(finished) < 40:
        for ep in vm.tick(policies, learner):
            finished.append(ep)
            vm.start(ep.env_index, seating(spec, len(finished) % 2, LEARNER, lineup))
    for ep in finished:
        own = [r for a, r in ep.returns.items() if ep.seating[a] == LEARNER]
        other = [r for a, r in ep.returns.items() if ep.seating[a] != LEARNER]
        assert own[0] in (-1.0, 0.0, 1.0) and own[0] == -other[0]
    # Episodes ended in every copy, and rewards reached the learner's transitions.
    ro = learner.rollout
    assert ro.num_complete > 0
    assert set(np.unique(ro.reward[: ro.size][ro.chain_break[: ro.size]])) <= {-1.0, 0.0, 1.0}
    assert ro.chain_break[: ro.size].sum() >= len([e for e in finished if e.length > 0]) - 4


def test_evaluation_is_repeatable_for_fixed_seeds() -> None:
    """Same seeds, same policies: the same episode returns (paired comparisons rely on it)."""
    factory, spec = _connect_four()
    space = spec.roles["player"].action_space
    results = []
    for _ in range(2):
        vm = VectorMatches([factory() for _ in range(3)], seed=5)
        own = RandomPolicy(space, np.random.default_rng(1))
        policies = {("random", "player"): RandomPolicy(space, np.random.default_rng(2))}
        gen = play_episodes(vm, spec, own, "player", (random_key("player"),), policies, list(range(10)))
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            results.append(stop.value)
    assert results[0].episodes == 10
    assert results[0].own == results[1].own and results[0].length == results[1].length


def test_box_actions_train_without_errors() -> None:
    """A continuous-action team (MPE spread with Box actions) acts, truncates, bootstraps and updates."""
    torch.set_num_threads(1)
    factory = resolve_env("mpe2.simple_spread_v3", {"continuous_actions": True, "max_cycles": 10})
    spec = build_env_spec(factory, [RoleRule("agent", "agent_.*", True)])
    rs = spec.roles["agent"]
    shape = PolicyShape(rs.obs_size, rs.action_space, (16,), "tanh")
    learner = PPOLearner(shape, PPOConfig(num_envs=2, rollout_steps=64, minibatches=2), torch.device("cpu"), seed=0)
    vm = VectorMatches([factory() for _ in range(2)], seed=0)
    for i in range(2):
        vm.start(i, seating(spec, 0, LEARNER, ()))
    episodes = 0
    while not learner.ready:
        for ep in vm.tick({}, learner):
            episodes += 1
            assert ep.length == 10
            vm.start(ep.env_index, seating(spec, 0, LEARNER, ()))
    # Truncated episodes bootstrap from a value, so their last transitions carry a non-zero next value.
    ro = learner.rollout
    ends = ro.chain_break[: ro.size] & ro.complete[: ro.size]
    assert episodes >= 2 and ends.any() and np.all(ro.next_value[: ro.size][ends] != 0.0)
    stats = learner.update(progress=0.0)
    assert np.isfinite([stats.policy_loss, stats.value_loss, stats.entropy]).all()
