"""The global state for centralised critics, and its journey with each transition into the learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpimarl.algos.networks import PolicyShape, RandomPolicy
from mpimarl.algos.ppo import PPOLearner
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.envs.spec import RoleRule, build_env_spec
from mpimarl.envs.state import SOURCE_ENV, SOURCE_OBSERVATIONS, StateReader, probe_state
from mpimarl.errors import EnvironmentSpecError
from mpimarl.rollout.critic_inputs import CriticInputs
from mpimarl.rollout.runner import LEARNER, VectorMatches
from mpimarl.rollout.seating import random_key, seating


def _learner(obs_size: int, space: object, critic_input: int) -> PPOLearner:
    torch.set_num_threads(1)
    shape = PolicyShape(obs_size, space, (16,), "tanh", critic_input=critic_input)
    return PPOLearner(shape, PPOConfig(num_envs=2, rollout_steps=10_000), torch.device("cpu"), seed=0)


def test_parallel_env_state_comes_from_its_state_method() -> None:
    """mpe2 simple_spread: the state is env.state() (all three observations); agent_state appends the
    agent's own observation and its one-hot index."""
    factory = resolve_env("mpe2.simple_spread_v3", {"N": 3, "continuous_actions": False})
    env = factory()
    env.reset(seed=1)
    spec = probe_state(env, "simple_spread")
    assert spec.source == SOURCE_ENV and spec.size == 54
    assert spec.input_size("state", "agent_1") == 54 and spec.input_size("agent_state", "agent_1") == 54 + 18 + 3
    env.reset(seed=1)
    reader = StateReader(env, spec)
    state = reader.read()
    np.testing.assert_allclose(state, np.concatenate([env.observe(a)[0] for a in env.possible_agents]))
    own = env.observe("agent_1")[0]
    x = reader.critic_input("agent_state", "agent_1", state, own)
    np.testing.assert_array_equal(x[:54], state)
    np.testing.assert_array_equal(x[54:72], own)
    np.testing.assert_array_equal(x[72:], [0.0, 1.0, 0.0])


def test_turn_based_state_concatenates_both_players_views() -> None:
    """connect_four has no state(): the state is both players' observations, read at every turn."""
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    env = factory()
    env.reset(seed=0)
    spec = probe_state(env, "connect_four")
    assert spec.source == SOURCE_OBSERVATIONS and spec.size == 2 * 84
    env.reset(seed=0)
    reader = StateReader(env, spec)
    env.step({"player_0": 3})
    state = reader.read()
    np.testing.assert_array_equal(state[:84], env.observe("player_0")[0])
    np.testing.assert_array_equal(state[84:], env.observe("player_1")[0])
    assert state.sum() == 2  # one stone, seen from both sides


def test_env_without_state_and_hidden_observations_is_refused() -> None:
    """No state() and observations that cannot be read off-turn: a clear error naming the agent."""
    factory = resolve_env("tests.fixtures.private_obs_env:make", {})
    env = factory()
    env.reset(seed=0)
    with pytest.raises(EnvironmentSpecError, match="has no global state.*'p0'.*cannot be concatenated"):
        probe_state(env, "private")


def test_connect_four_transitions_carry_the_state_into_the_rollout() -> None:
    """AEC: each learner transition's critic input is the concatenated state at the time it acted."""
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", False)])
    envs = [factory() for _ in range(2)]
    envs[0].reset(seed=0)
    state_spec = probe_state(envs[0], "connect_four")
    role = spec.roles["player"]
    learner = _learner(role.obs_size, role.action_space, state_spec.size)
    vm = VectorMatches(envs, seed=0, critic_inputs=CriticInputs(envs, state_spec, "state"))
    policies = {("random", "player"): RandomPolicy(role.action_space, np.random.default_rng(0))}
    for i in range(2):
        vm.start(i, seating(spec, i, LEARNER, (random_key("player"),)))
    for _ in range(30):
        for ep in vm.tick(policies, learner):
            vm.start(ep.env_index, seating(spec, ep.env_index, LEARNER, (random_key("player"),)))
    ro = learner.rollout
    n = ro.size
    assert n > 10 and ro.critic_in is not None
    for k in range(n):
        obs, state = ro.obs[k], ro.critic_in[k]
        # The learner's own view is one half of the state; the other half is the opponent's view of
        # the same board (the same stones, with the planes swapped).
        halves = (state[:84], state[84:])
        own = next(h for h in halves if np.array_equal(h, obs))
        other = halves[1] if own is halves[0] else halves[0]
        np.testing.assert_array_equal(other.reshape(6, 7, 2)[..., ::-1], obs.reshape(6, 7, 2))


def test_listener_critic_sees_the_speakers_view_in_parallel_env() -> None:
    """speaker_listener with the speaker played by another policy: the listener's critic input is the
    full env state (the speaker's goal colour, then the listener's own observation)."""
    factory = resolve_env("mpe2.simple_speaker_listener_v4", {"continuous_actions": False})
    spec = build_env_spec(factory, [RoleRule("speaker", "speaker_.*", True), RoleRule("listener", "listener_.*", True)])
    envs = [factory() for _ in range(2)]
    envs[0].reset(seed=0)
    state_spec = probe_state(envs[0], "speaker_listener")
    role = spec.roles["listener"]
    learner = _learner(role.obs_size, role.action_space, state_spec.size)
    vm = VectorMatches(envs, seed=0, critic_inputs=CriticInputs(envs, state_spec, "state"))
    speaker_space = spec.roles["speaker"].action_space
    policies = {("random", "speaker"): RandomPolicy(speaker_space, np.random.default_rng(0))}
    for i in range(2):
        vm.start(i, seating(spec, 1, LEARNER, (random_key("speaker"),)))
    goals = []
    for _ in range(25):
        goals.append([envs[i].observe("speaker_0")[0].copy() for i in range(2)])
        vm.tick(policies, learner)
    ro = learner.rollout
    critic_in = ro.critic_in[: ro.size]
    assert critic_in.shape == (50, 14)
    np.testing.assert_array_equal(critic_in[:, 3:], ro.obs[: ro.size])  # the listener's own observation
    np.testing.assert_array_equal(critic_in[:, :3], np.concatenate(goals))  # the speaker's goal colour
    # Every transition of the 25-step episodes completed, bootstrapped at the time limit from the final state.
    assert ro.num_complete == 50 and ro.chain_break[: ro.size].sum() == 2


def test_batched_agent_state_matches_the_per_agent_definition() -> None:
    """CriticInputs.build (one batch per tick) gives each agent state + own observation + one-hot."""
    factory = resolve_env("mpe2.simple_spread_v3", {"N": 3, "continuous_actions": False})
    envs = [factory() for _ in range(2)]
    envs[0].reset(seed=0)
    spec = probe_state(envs[0], "simple_spread")
    for i, env in enumerate(envs):
        env.reset(seed=10 + i)
    feed = CriticInputs(envs, spec, "agent_state")
    requests = [(i, a) for i in range(2) for a in ("agent_2", "agent_0")]
    obs = np.stack([envs[i].observe(a)[0] for i, a in requests])
    batch = feed.build(requests, obs)
    assert batch.shape == (4, 75)
    for row, (i, a), o in zip(batch, requests, obs):
        reader = feed.readers[i]
        np.testing.assert_array_equal(row, reader.critic_input("agent_state", a, reader.read(), o))


def test_mpe_state_read_from_observations_equals_env_state_every_step() -> None:
    """MPE's state() is every agent's observation concatenated; the reader takes the adapter's
    observations instead (cheaper) and must return exactly state() at every step, the last included."""
    factory = resolve_env("mpe2.simple_spread_v3", {"N": 3, "continuous_actions": False, "max_cycles": 25})
    env = factory()
    env.reset(seed=3)
    spec = probe_state(env, "simple_spread")
    assert spec.state_is_observations
    env.reset(seed=4)
    reader = StateReader(env, spec)
    raw_state = env.raw_env.state
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        np.testing.assert_array_equal(reader.read(), np.asarray(raw_state(), np.float32))
        if not env.acting_agents():
            break
        env.step({a: int(rng.integers(5)) for a in env.acting_agents()})
        steps += 1
    assert steps == 25


def test_state_with_hidden_parts_is_read_from_the_env() -> None:
    """A state() holding more than the observations (a hidden clock) is never replaced by them."""
    factory = resolve_env("tests.fixtures.hidden_state_env:make", {})
    env = factory()
    env.reset(seed=0)
    spec = probe_state(env, "hidden_clock")
    assert spec.source == SOURCE_ENV and spec.size == 3 and not spec.state_is_observations
    env.reset(seed=0)
    reader = StateReader(env, spec)
    env.step({"a0": 1, "a1": 0})
    np.testing.assert_array_equal(reader.read(), [1.0, -1.0, 1.0])
