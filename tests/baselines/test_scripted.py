"""Loading scripted policies by name or path, the action checks, and the start-up check."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from mpimarl.baselines import (
    BASELINE_NAMES,
    ScriptedPolicyError,
    check_scripted,
    list_baselines,
    load_scripted,
    policy_factory,
    policy_parameters,
)
from mpimarl.envs import RoleRule, build_env_spec, resolve_env
from mpimarl.errors import ConfigError

SEVEN = gymnasium.spaces.Discrete(7)
BOX = gymnasium.spaces.Box(-1.0, 1.0, (2, 3), np.float32)
OBS = np.zeros((4, 84), np.float32)
HERE = __name__  # this module's import path, so its functions can be named like a user's


# ---- policies a user might write ------------------------------------------------------------------


def first_legal(obs: np.ndarray, mask: np.ndarray | None) -> int:
    return int(np.flatnonzero(mask)[0])


def always_six(obs: np.ndarray, mask: np.ndarray | None) -> int:
    return 6


def returns_float(obs: np.ndarray, mask: np.ndarray | None) -> float:
    return 1.0


def returns_none(obs: np.ndarray, mask: np.ndarray | None) -> None:
    return None


def crashes(obs: np.ndarray, mask: np.ndarray | None) -> int:
    raise KeyError("oops")


def random_legal(obs: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(mask)))


def box_flat(obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.full(6, 0.5)


def box_wrong_shape(obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.zeros(4)


def box_nan(obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.full((2, 3), np.nan)


class Batched:
    """A batched policy: the last legal action of each row."""

    def __init__(self, action_space: gymnasium.spaces.Space, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)


@policy_factory
def make_batched(action_space: gymnasium.spaces.Space, rng: np.random.Generator) -> Batched:
    return Batched(action_space, rng)


def nth_legal(obs: np.ndarray, mask: np.ndarray | None, n: int = 0) -> int:
    """A user's per-observation policy with a parameter."""
    return int(np.flatnonzero(mask)[n])


class Offset:
    """A user's batched policy with a parameter and no pydantic model: names are checked, values not."""

    def __init__(self, action_space: gymnasium.spaces.Space, rng: np.random.Generator, shift: int = 0) -> None:
        self.shift = shift

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return mask.argmax(axis=1) + self.shift


class NoAct:
    def __init__(self, action_space: gymnasium.spaces.Space, rng: np.random.Generator) -> None:
        pass


NOT_CALLABLE = 3


def _mask(*legal: int, rows: int = 4) -> np.ndarray:
    mask = np.zeros((rows, 7), bool)
    mask[:, list(legal)] = True
    return mask


# ---- loading --------------------------------------------------------------------------------------


def test_registry_lists_every_name_with_a_description() -> None:
    listed = dict(list_baselines())
    assert tuple(listed) == BASELINE_NAMES
    assert {"tactical", "centre", "spread_heuristic", "speaker_heuristic", "listener_heuristic"} <= set(listed)
    assert all(description for description in listed.values())


def test_per_observation_functions_and_batched_classes_act_through_one_contract() -> None:
    mask = _mask(2, 5)
    assert load_scripted(f"{HERE}:first_legal", SEVEN, 0).act(OBS, mask).tolist() == [2, 2, 2, 2]
    assert load_scripted(f"{HERE}:Batched", SEVEN, 0).act(OBS, mask).tolist() == [5, 5, 5, 5]
    assert load_scripted(f"{HERE}:make_batched", SEVEN, 0).act(OBS, mask).tolist() == [5, 5, 5, 5]
    actions = load_scripted(f"{HERE}:box_flat", BOX, 0).act(np.zeros((3, 5), np.float32), None)
    assert actions.shape == (3, 6) and actions.dtype == np.float32


def test_randomness_comes_from_the_seed() -> None:
    """A function with an `rng` parameter gets a Generator seeded by `seed`: evaluations repeat."""
    mask = _mask(0, 1, 2, 3, 4, 5, 6, rows=64)
    obs = np.zeros((64, 84), np.float32)
    a = load_scripted(f"{HERE}:random_legal", SEVEN, 7).act(obs, mask)
    b = load_scripted(f"{HERE}:random_legal", SEVEN, 7).act(obs, mask)
    c = load_scripted(f"{HERE}:random_legal", SEVEN, 8).act(obs, mask)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist() and len(set(a.tolist())) > 3
    tactical = [load_scripted("tactical", SEVEN, seed).act(obs, mask).tolist() for seed in (1, 1, 2)]
    assert tactical[0] == tactical[1] != tactical[2]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tactcal", "did you mean 'tactical'"),
        ("spread", "did you mean 'spread_heuristic'"),
        ("no_such_module_xyz:policy", "importing module 'no_such_module_xyz' failed with ModuleNotFoundError"),
        ("mpimarl.baselines.connect_four:Tactical", "has no attribute 'Tactical'; the module has TacticalPlayer"),
        (f"{HERE}:NOT_CALLABLE", "is a int, not a function"),
        (f"{HERE}:NoAct", "which has no act(obs_batch, mask_batch) method"),
        ("mpimarl.baselines:", "is malformed"),
        ("", "must be a registered name or an import path"),
    ],
)
def test_unloadable_names_are_config_errors_naming_the_cause(name: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="scripted policy") as info:
        load_scripted(name, SEVEN, 0)
    assert expected in str(info.value)
    assert not isinstance(info.value, ScriptedPolicyError)


def test_a_policy_for_another_action_space_is_refused_when_built() -> None:
    with pytest.raises(ConfigError, match=r"building it for action space Discrete\(5\) raised ValueError") as info:
        load_scripted("tactical", gymnasium.spaces.Discrete(5), 0)
    assert "needs Discrete(7)" in str(info.value)
    with pytest.raises(ConfigError, match="neither Discrete nor Box"):
        load_scripted("tactical", gymnasium.spaces.MultiBinary(3), 0)


# ---- checking every action -------------------------------------------------------------------------


def _illegal(name: str, space: gymnasium.spaces.Space, obs: np.ndarray, mask: np.ndarray | None) -> str:
    with pytest.raises(ScriptedPolicyError) as info:
        load_scripted(name, space, 0).act(obs, mask)
    assert isinstance(info.value, ConfigError)
    return str(info.value)


def test_masked_out_action_names_policy_action_and_legal_ones() -> None:
    message = _illegal(f"{HERE}:always_six", SEVEN, OBS, _mask(0, 3))
    assert f"'{HERE}:always_six' chose action 6 for observation 0" in message
    assert "action mask forbids; legal actions: [0, 3]" in message


def test_out_of_range_and_non_integer_actions_are_caught() -> None:
    assert "outside Discrete(5)" in _illegal(f"{HERE}:always_six", gymnasium.spaces.Discrete(5), OBS, None)
    assert "must be integers" in _illegal(f"{HERE}:returns_float", SEVEN, OBS, _mask(1))
    assert "must be integers" in _illegal(f"{HERE}:returns_none", SEVEN, OBS, _mask(1))


def test_box_actions_of_the_wrong_shape_or_not_finite_are_caught() -> None:
    obs = np.zeros((2, 5), np.float32)
    assert "shape (4,) for observation 0" in _illegal(f"{HERE}:box_wrong_shape", BOX, obs, None)
    assert "non-finite" in _illegal(f"{HERE}:box_nan", BOX, obs, None)


def test_a_crash_inside_the_policy_names_the_policy() -> None:
    assert f"'{HERE}:crashes' raised KeyError" in _illegal(f"{HERE}:crashes", SEVEN, OBS, _mask(1))
    # A shipped policy on the wrong env says what it expected.
    message = _illegal("tactical", SEVEN, np.zeros((2, 18), np.float32), None)
    assert "'tactical' (mpimarl.baselines.connect_four:TacticalPlayer) raised ValueError" in message
    assert "84 values" in message


# ---- start-up check ------------------------------------------------------------------------------


def _connect_four() -> tuple[object, object]:
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    return factory, build_env_spec(factory, [RoleRule("player", "player_.*", team=False)])


def test_check_scripted_plays_legal_episodes() -> None:
    factory, spec = _connect_four()
    returns = check_scripted("tactical", factory, spec, "player", episodes=3, seed=5)
    assert len(returns) == 3 and all(r == 0.0 for r in returns)  # it plays both seats: zero-sum


def test_check_scripted_reports_the_env_and_role_of_an_illegal_action() -> None:
    factory, spec = _connect_four()
    with pytest.raises(ScriptedPolicyError) as info:
        check_scripted(f"{HERE}:always_six", factory, spec, "player", episodes=2)
    message = str(info.value)
    assert "env 'pettingzoo.classic.connect_four_v3', role 'player'" in message
    assert "chose action 6" in message and "legal actions: [0, 1, 2, 3, 4, 5]" in message
    with pytest.raises(ConfigError, match=r"has no role 'players'; its roles are \['player'\]"):
        check_scripted("tactical", factory, spec, "players")


def test_check_scripted_puts_random_agents_in_the_other_roles() -> None:
    factory = resolve_env("mpe2.simple_speaker_listener_v4", {"continuous_actions": False})
    spec = build_env_spec(factory, [RoleRule("speaker", "speaker_.*", True), RoleRule("listener", "listener_.*", True)])
    returns = check_scripted("speaker_heuristic", factory, spec, "speaker", episodes=2)
    assert len(returns) == 2
    with pytest.raises(ConfigError, match=r"role 'listener'.*'speaker_heuristic'.*needs the speaker's Discrete\(3\)"):
        check_scripted("speaker_heuristic", factory, spec, "listener", episodes=1)
    with pytest.raises(ScriptedPolicyError, match="role 'listener'.*'spread_heuristic'.*got shape"):
        check_scripted("spread_heuristic", factory, spec, "listener", episodes=1)


# ---- parameters ------------------------------------------------------------------------------------


def test_user_policies_take_keyword_parameters_checked_by_name() -> None:
    mask = _mask(2, 4, 5)
    assert load_scripted(f"{HERE}:nth_legal", SEVEN, 0, {"n": 2}).act(OBS, mask).tolist() == [5, 5, 5, 5]
    assert load_scripted(f"{HERE}:Offset", SEVEN, 0, {"shift": 2}).act(OBS, mask).tolist() == [4, 4, 4, 4]
    assert [p.name for p in policy_parameters(f"{HERE}:Offset")] == ["shift"]
    assert [p.name for p in policy_parameters(f"{HERE}:nth_legal")] == ["n"]
    assert policy_parameters("tactical") == []
    with pytest.raises(ConfigError, match=r"no parameter 'shfit'.*did you mean 'shift'"):
        load_scripted(f"{HERE}:Offset", SEVEN, 0, {"shfit": 1})
    with pytest.raises(ConfigError, match=r"'tactical' has no parameter 'depth'.*its parameters: none"):
        load_scripted("tactical", SEVEN, 0, {"depth": 2})
    # A bad value of a parameter without a model surfaces as an illegal action, naming the parameter.
    with pytest.raises(ScriptedPolicyError, match=r"shift=9.*outside Discrete\(7\)"):
        load_scripted(f"{HERE}:Offset", SEVEN, 0, {"shift": 9}).act(OBS, mask)


def test_check_scripted_passes_the_parameters() -> None:
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", False)])
    assert len(check_scripted("negamax", factory, spec, "player", episodes=1, kwargs={"depth": 1})) == 1
    with pytest.raises(ConfigError, match=r"env 'pettingzoo.classic.connect_four_v3', role 'player'.*depth=0"):
        check_scripted("negamax", factory, spec, "player", kwargs={"depth": 0})
