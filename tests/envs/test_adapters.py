"""The three adapters on real PettingZoo, mpe2 and Gymnasium environments."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.classic import connect_four_v3
from pettingzoo.utils.wrappers import BaseWrapper

from mpimarl.envs import MultiAgentEnv, StepResult, resolve_env, wrap_env
from mpimarl.envs.encoding import make_action_preparer, make_observation_encoder
from mpimarl.envs.pettingzoo_aec import PettingZooAECAdapter

C4 = "pettingzoo.classic.connect_four_v3"


def play(env: MultiAgentEnv, columns: list[int]) -> list[StepResult]:
    """Play connect_four columns in turn order, returning every StepResult."""
    results = []
    for column in columns:
        (agent,) = env.acting_agents()
        results.append(env.step({agent: column}))
    return results


# ---- PettingZoo AEC: connect_four -----------------------------------------------------------------


def test_connect_four_turns_observations_and_masks() -> None:
    env = resolve_env(C4, {})()
    assert isinstance(env, MultiAgentEnv)
    assert env.possible_agents == ["player_0", "player_1"]
    assert env.obs_size("player_0") == 6 * 7 * 2
    assert env.action_space("player_1") == spaces.Discrete(7)
    env.reset(seed=0)
    assert env.acting_agents() == ["player_0"]
    obs, mask = env.observe("player_0")
    assert obs.dtype == np.float32 and obs.shape == (84,) and not obs.any()
    assert mask is not None and mask.dtype == np.bool_ and mask.all()

    # Alternate in column 0 until it is full: no winner, and the column becomes illegal.
    results = play(env, [0] * 6)
    assert all(r.rewards == {} and r.ended == {} and not r.episode_over for r in results)
    assert env.acting_agents() == ["player_0"]
    obs, mask = env.observe("player_0")
    assert mask is not None and mask.tolist() == [False] + [True] * 6
    assert obs.sum() == 6  # six pieces, one plane bit each


def test_connect_four_win_rewards_both_players_in_one_step() -> None:
    env = resolve_env(C4, {})()
    env.reset(seed=0)
    # player_0 stacks column 0, player_1 column 1: player_0 connects four on its 4th move.
    results = play(env, [0, 1, 0, 1, 0, 1, 0])
    assert all(r.rewards == {} and not r.episode_over for r in results[:-1])
    last = results[-1]
    assert last.rewards == {"player_0": 1.0, "player_1": -1.0}
    assert last.ended == {"player_0": False, "player_1": False}  # terminated, not truncated
    assert last.final_obs == {}
    assert last.episode_over
    assert env.acting_agents() == []

    env.reset(seed=1)  # a fresh episode starts cleanly after the end
    assert env.acting_agents() == ["player_0"]


def test_connect_four_illegal_move_ends_the_game_with_penalty() -> None:
    # TerminateIllegalWrapper writes its penalty on the unwrapped env; the adapter must see it.
    env = resolve_env(C4, {})()
    env.reset(seed=0)
    play(env, [0] * 6)
    (last,) = play(env, [0])
    assert last.rewards == {"player_0": -1.0}
    assert set(last.ended) == {"player_0", "player_1"}
    assert last.episode_over


class _DoubledRewards(BaseWrapper):
    """A user wrapper that changes rewards through a property, so the adapter must read via it."""

    @property
    def rewards(self) -> dict[str, float]:
        return {agent: 2 * reward for agent, reward in self.env.rewards.items()}


def test_aec_adapter_reads_state_through_user_wrappers() -> None:
    env = PettingZooAECAdapter(_DoubledRewards(connect_four_v3.env()))
    env.reset(seed=0)
    last = play(env, [0, 1, 0, 1, 0, 1, 0])[-1]
    assert last.rewards == {"player_0": 2.0, "player_1": -2.0}


def test_step_with_wrong_agents_is_rejected() -> None:
    env = resolve_env(C4, {})()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="player_0"):
        env.step({"player_1": 3})


def test_aec_truncation_reports_final_obs_for_every_agent() -> None:
    # mpe2's AEC form: every agent is truncated at max_cycles and must be bootstrapped.
    env = resolve_env("mpe2.simple_spread_v3:env", {"max_cycles": 3})()
    env.reset(seed=0)
    results = []
    while not results or not results[-1].episode_over:
        (agent,) = env.acting_agents()
        results.append(env.step({agent: 0}))
    assert len(results) == 3 * 3
    last = results[-1]
    assert last.ended == {"agent_0": True, "agent_1": True, "agent_2": True}
    assert {a: o.shape for a, o in last.final_obs.items()} == {f"agent_{i}": (18,) for i in range(3)}
    # Shared team reward is paid at the end of every cycle to all three agents.
    assert set(results[2].rewards) == {"agent_0", "agent_1", "agent_2"}


# ---- PettingZoo parallel: mpe2 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "sizes"),
    [
        ("mpe2.simple_spread_v3", {"agent_0": 18, "agent_1": 18, "agent_2": 18}),
        ("mpe2.simple_tag_v3", {"adversary_0": 16, "adversary_1": 16, "adversary_2": 16, "agent_0": 14}),
        ("mpe2.simple_speaker_listener_v4", {"speaker_0": 3, "listener_0": 11}),
    ],
)
def test_mpe_parallel_truncates_after_25_steps(env_id: str, sizes: dict[str, int]) -> None:
    factory = resolve_env(env_id, {})
    assert factory.api == "parallel"
    env = factory()
    env.reset(seed=0)
    assert env.acting_agents() == list(sizes)
    rng = np.random.default_rng(0)
    for step in range(1, 26):
        actions = {}
        for agent in env.acting_agents():
            obs, mask = env.observe(agent)
            assert obs.shape == (sizes[agent],) and obs.dtype == np.float32 and mask is None
            actions[agent] = int(rng.integers(env.action_space(agent).n))
        result = env.step(actions)
        assert set(result.rewards) == set(sizes)
        assert all(isinstance(r, float) for r in result.rewards.values())
        if step < 25:
            assert result.ended == {} and result.final_obs == {} and not result.episode_over
    assert result.ended == dict.fromkeys(sizes, True)
    assert {a: o.shape for a, o in result.final_obs.items()} == {a: (n,) for a, n in sizes.items()}
    assert result.episode_over and env.acting_agents() == []


def _spread_obs_after(actions: list[np.ndarray], env: MultiAgentEnv) -> np.ndarray:
    env.reset(seed=3)
    for action in actions:
        env.step(dict.fromkeys(env.acting_agents(), action))
    return env.observe("agent_0")[0].copy()


def test_box_actions_are_clipped_to_the_space() -> None:
    # raw_env has no ClipOutOfBounds wrapper: out-of-range actions change the dynamics unless
    # the adapter clips them.
    factory = resolve_env("mpe2.simple_spread_v3:raw_env", {"continuous_actions": True})
    env = factory()
    space = env.action_space("agent_0")
    assert isinstance(space, spaces.Box) and space.low.min() == 0.0 and space.high.max() == 1.0
    wild = [np.array([-3.0, 0.5, 7.0, 0.2, 2.0], np.float32)] * 4
    clipped = [np.clip(a, 0.0, 1.0) for a in wild]
    through_adapter = _spread_obs_after(wild, env)
    assert np.array_equal(through_adapter, _spread_obs_after(clipped, factory()))

    raw = factory().raw_env  # type: ignore[attr-defined]
    raw.reset(seed=3)
    for action in wild:
        raw.step(action)
    assert not np.array_equal(through_adapter, raw.observe("agent_0"))


def test_box_actions_through_wrapped_mpe_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    env = resolve_env("mpe2.simple_spread_v3", {"continuous_actions": True})()
    env.reset(seed=0)
    with caplog.at_level(logging.WARNING):
        env.step(dict.fromkeys(env.acting_agents(), np.full(5, 9.0, np.float32)))
    assert "outside action space" not in caplog.text


# ---- Gymnasium --------------------------------------------------------------------------------


def test_cartpole_termination() -> None:
    env = resolve_env("gymnasium:CartPole-v1", {})()
    assert env.possible_agents == ["agent"] and env.obs_size("agent") == 4
    env.reset(seed=0)
    steps = 0
    while True:
        assert env.acting_agents() == ["agent"]
        result = env.step({"agent": 0})  # always push left: falls within ~10 steps
        steps += 1
        assert result.rewards == {"agent": 1.0}
        if result.episode_over:
            break
    assert 5 < steps < 50
    assert result.ended == {"agent": False} and result.final_obs == {}
    assert env.acting_agents() == []


def test_cartpole_truncation_gives_final_obs() -> None:
    env = resolve_env("gymnasium:CartPole-v1", {"max_episode_steps": 4})()
    env.reset(seed=0)
    results = [env.step({"agent": i % 2}) for i in range(4)]
    assert [r.episode_over for r in results] == [False, False, False, True]
    assert results[-1].ended == {"agent": True}
    assert results[-1].final_obs["agent"].shape == (4,)


def test_gymnasium_discrete_obs_one_hot_and_info_mask() -> None:
    lake = resolve_env("gymnasium:FrozenLake-v1", {})()
    lake.reset(seed=0)
    obs, mask = lake.observe("agent")
    assert obs.tolist() == [1.0] + [0.0] * 15 and mask is None

    taxi = resolve_env("gymnasium:Taxi-v4", {})()
    taxi.reset(seed=0)
    obs, mask = taxi.observe("agent")
    assert obs.shape == (500,) and obs.sum() == 1.0
    assert mask is not None and mask.dtype == np.bool_ and mask.shape == (6,)
    assert 0 < mask.sum() < 6


def test_wrap_env_accepts_raw_objects() -> None:
    env = wrap_env(gymnasium.make("CartPole-v1"))
    env.reset(seed=0)
    assert env.acting_agents() == ["agent"]


# ---- encoders and action preparers ----------------------------------------------------------------


def test_encoders_for_each_space_kind() -> None:
    box = make_observation_encoder(spaces.Box(0, 1, (2, 3), np.float32))
    flat, mask = box.encode(np.ones((2, 3), np.float32))
    assert box.size == 6 and flat.shape == (6,) and mask is None

    masked = make_observation_encoder(
        spaces.Dict({"observation": spaces.Box(0, 1, (2,), np.int8), "action_mask": spaces.MultiBinary(3)})
    )
    flat, mask = masked.encode({"observation": np.array([1, 0], np.int8), "action_mask": np.array([0, 1, 1], np.int8)})
    assert masked.mask_in_obs and flat.dtype == np.float32 and flat.tolist() == [1.0, 0.0]
    assert mask is not None and mask.tolist() == [False, True, True]

    one_hot = make_observation_encoder(spaces.Discrete(3, start=5))
    assert one_hot.encode(6)[0].tolist() == [0.0, 1.0, 0.0]

    other = make_observation_encoder(spaces.Tuple((spaces.Discrete(2), spaces.MultiBinary(2))))
    flat, _ = other.encode((1, np.array([1, 0], np.int8)))
    assert other.size == 4 and flat.dtype == np.float32 and flat.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_action_preparers() -> None:
    assert make_action_preparer(spaces.Discrete(4))(np.int64(2)) == 2
    assert make_action_preparer(spaces.Discrete(3, start=-1))(0) == -1
    box = make_action_preparer(spaces.Box(-1.0, 1.0, (2, 2), np.float64))
    out: Any = box(np.array([5, -5, 0.5, 0], np.float32))
    assert out.shape == (2, 2) and out.dtype == np.float64
    assert out.ravel().tolist() == [1.0, -1.0, 0.5, 0.0]
