"""Mapping agents to roles: seats, and errors that name the agent, rule or role at fault."""

from __future__ import annotations

import pytest
from gymnasium import spaces

from mpimarl.envs import EnvFactory, RoleRule, build_env_spec, resolve_env
from mpimarl.errors import EnvironmentSpecError

from .tiny_envs import TinyEnv

TAG = "mpe2.simple_tag_v3"
TAG_RULES = [RoleRule("predator", "adversary_.*", team=True), RoleRule("prey", "agent_.*", team=True)]


def test_simple_tag_teams_give_two_seats() -> None:
    spec = build_env_spec(resolve_env(TAG, {}), TAG_RULES)
    assert spec.env_id == TAG and spec.api == "parallel"
    assert list(spec.roles) == ["predator", "prey"]
    predator, prey = spec.roles["predator"], spec.roles["prey"]
    assert predator.agents == ("adversary_0", "adversary_1", "adversary_2")
    assert (predator.obs_size, prey.obs_size) == (16, 14)
    assert predator.action_space == spaces.Discrete(5) and not predator.has_mask
    assert spec.role_of["agent_0"] == "prey"
    assert spec.seats() == [("predator", ("adversary_0", "adversary_1", "adversary_2")), ("prey", ("agent_0",))]


def test_connect_four_players_are_two_seats_of_one_role() -> None:
    spec = build_env_spec(
        resolve_env("pettingzoo.classic.connect_four_v3", {}), [RoleRule("player", "player_.*", team=False)]
    )
    assert spec.seats() == [("player", ("player_0",)), ("player", ("player_1",))]
    role = spec.roles["player"]
    assert role.has_mask and role.obs_size == 84 and role.action_space == spaces.Discrete(7)


def test_seats_follow_agent_order() -> None:
    rules = [RoleRule("listener", "listener_.*", team=True), RoleRule("speaker", "speaker_.*", team=True)]
    spec = build_env_spec(resolve_env("mpe2.simple_speaker_listener_v4", {}), rules)
    assert list(spec.roles) == ["listener", "speaker"]  # rule order
    assert spec.seats() == [("speaker", ("speaker_0",)), ("listener", ("listener_0",))]  # agent order


def _spec_error(rules: list[RoleRule], env_id: str = TAG) -> str:
    with pytest.raises(EnvironmentSpecError) as info:
        build_env_spec(resolve_env(env_id, {}), rules)
    return str(info.value)


def test_unmatched_agent_is_named() -> None:
    message = _spec_error([RoleRule("predator", "adversary_.*", team=True)])
    assert "agent 'agent_0' matches no role" in message and "predator='adversary_.*'" in message


def test_rule_matching_nothing_lists_the_agents() -> None:
    message = _spec_error([*TAG_RULES, RoleRule("ghost", "ghost_.*", team=True)])
    assert "role 'ghost'" in message and "matches no agent" in message
    assert "'adversary_0', 'adversary_1', 'adversary_2', 'agent_0'" in message


def test_agent_matching_two_rules() -> None:
    message = _spec_error([*TAG_RULES, RoleRule("everyone", ".*", team=True)])
    assert "agent 'adversary_0' matches several roles ['predator', 'everyone']" in message


def test_bad_regex_and_duplicate_role() -> None:
    assert "'adversary_(' is not a valid regular expression" in _spec_error([RoleRule("predator", "adversary_(", True)])
    assert "role 'prey' is defined twice" in _spec_error([*TAG_RULES, TAG_RULES[1]])


def test_mixed_observation_sizes_in_one_role() -> None:
    message = _spec_error([RoleRule("all", ".*", team=True)])
    assert "role 'all' mixes agents with different observation sizes" in message
    assert "'adversary_0' has 16" in message and "'agent_0' has 14" in message


def test_mixed_action_spaces_in_one_role() -> None:
    # simple_world_comm: the lead adversary also talks (20 actions), the others have 5.
    message = _spec_error(
        [RoleRule("hunters", ".*adversary_.*", True), RoleRule("good", "agent_.*", True)], "mpe2.simple_world_comm_v3"
    )
    assert "role 'hunters' mixes agents with different action spaces" in message
    assert "Discrete(20)" in message and "Discrete(5)" in message


def test_unsupported_action_space() -> None:
    factory = EnvFactory("tiny-multidiscrete", "gymnasium", lambda: TinyEnv(action_space=spaces.MultiDiscrete([2, 3])))
    with pytest.raises(EnvironmentSpecError, match="role 'solo' .* MultiDiscrete.*Discrete and Box"):
        build_env_spec(factory, [RoleRule("solo", "agent", team=True)])
