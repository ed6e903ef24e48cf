"""`check_env`: passes on the supported environments, fails clearly on broken ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from mpimarl.envs import EnvFactory, RoleRule, build_env_spec, check_env, resolve_env
from mpimarl.errors import EnvironmentSpecError

from .tiny_envs import TakeTurnsAEC, TinyEnv

TEAM = True


@pytest.mark.parametrize(
    ("env_id", "kwargs", "rules"),
    [
        ("pettingzoo.classic.connect_four_v3", {}, [RoleRule("player", "player_.*", not TEAM)]),
        ("mpe2.simple_spread_v3", {}, [RoleRule("agents", "agent_.*", TEAM)]),
        ("mpe2.simple_spread_v3", {"continuous_actions": True}, [RoleRule("agents", "agent_.*", TEAM)]),
        ("mpe2.simple_tag_v3", {}, [RoleRule("predator", "adversary_.*", TEAM), RoleRule("prey", "agent_.*", TEAM)]),
        (
            "mpe2.simple_speaker_listener_v4",
            {},
            [RoleRule("speaker", "speaker_.*", TEAM), RoleRule("listener", "listener_.*", TEAM)],
        ),
        ("gymnasium:CartPole-v1", {}, [RoleRule("agent", "agent", TEAM)]),
    ],
)
def test_check_passes_on_supported_envs(env_id: str, kwargs: dict[str, Any], rules: list[RoleRule]) -> None:
    factory = resolve_env(env_id, kwargs)
    summary = check_env(factory, build_env_spec(factory, rules), episodes=2, seed=1)
    assert summary["episodes"] == 2 and summary["steps"] > 0
    assert summary["mean_length"] == summary["steps"] / 2
    assert set(summary["mean_return"]) == {rule.name for rule in rules}
    assert all(math.isfinite(value) for value in summary["mean_return"].values())
    if env_id.startswith("mpe2"):
        assert summary["mean_length"] == 25
    if env_id.startswith("pettingzoo.classic"):
        assert summary["mean_return"]["player"] == 0.0  # zero-sum: +1 and -1, or a draw
    if env_id.startswith("gymnasium"):
        assert summary["mean_return"]["agent"] == summary["mean_length"]  # +1 per step


def test_check_counts_the_last_movers_reward_in_a_custom_aec_env() -> None:
    factory = EnvFactory("take-turns", "aec", TakeTurnsAEC)
    spec = build_env_spec(factory, [RoleRule("a", "a", TEAM), RoleRule("b", "b", TEAM)])
    summary = check_env(factory, spec, episodes=2)
    assert summary == {"episodes": 2, "steps": 8, "mean_length": 4.0, "mean_return": {"a": 0.0, "b": 1.0}}


def _check_error(make: Callable[[], Any], api: str = "gymnasium", **check_kwargs: Any) -> str:
    factory = EnvFactory("broken-env", api, make)
    rules = [RoleRule("a", "a", TEAM), RoleRule("b", "b", TEAM)] if api == "aec" else [RoleRule("solo", "agent", TEAM)]
    spec = build_env_spec(factory, rules)
    with pytest.raises(EnvironmentSpecError) as info:
        check_env(factory, spec, **check_kwargs)
    message = str(info.value)
    assert "env 'broken-env' failed the check at episode 0" in message
    return message


def test_wrong_observation_size() -> None:
    message = _check_error(lambda: TinyEnv(declared_size=4, returned_size=3))
    assert "agent 'agent': observation has shape (3,)" in message and "obs_size=4" in message


def test_non_finite_observation() -> None:
    assert "non-finite values at indices [0, 1, 2, 3]" in _check_error(lambda: TinyEnv(value=math.nan))


def test_mask_without_legal_action() -> None:
    assert "its action mask allows no action" in _check_error(lambda: TinyEnv(info_mask=[0, 0]))


def test_mask_of_the_wrong_length() -> None:
    assert "action mask has shape (3,)" in _check_error(lambda: TinyEnv(info_mask=[1, 1, 1]))


def test_episode_that_never_ends() -> None:
    message = _check_error(lambda: TinyEnv(horizon=None), max_episode_steps=50)
    assert "step 50" in message and "still running after 50 steps" in message


def test_acting_agent_outside_possible_agents() -> None:
    message = _check_error(lambda: TakeTurnsAEC(stray=True), api="aec")
    assert "acting agent 'ghost' is not one of possible_agents ['a', 'b']" in message


class _CrashingEnv(TinyEnv):
    def step(self, action: Any) -> Any:
        raise RuntimeError("physics exploded")


def test_env_raising_is_located() -> None:
    message = _check_error(_CrashingEnv)
    assert "step 0: step with actions {'agent':" in message and "RuntimeError: physics exploded" in message
