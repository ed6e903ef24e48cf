"""Resolving env ids: the three id forms, API detection, and error messages that name the id."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mpimarl.envs import EnvFactory, resolve_env
from mpimarl.envs.pettingzoo_aec import PettingZooAECAdapter
from mpimarl.envs.pettingzoo_parallel import PettingZooParallelAdapter
from mpimarl.errors import EnvironmentSpecError

from .tiny_envs import TinyEnv

LIST_HINT = "python -m mpimarl envs"


@pytest.mark.parametrize(
    ("env_id", "api", "adapter"),
    [
        ("pettingzoo.classic.connect_four_v3", "aec", PettingZooAECAdapter),
        ("mpe2.simple_spread_v3", "parallel", PettingZooParallelAdapter),  # parallel_env preferred
        ("mpe2.simple_spread_v3:env", "aec", PettingZooAECAdapter),
        ("pettingzoo.classic.connect_four_v3:raw_env", "aec", PettingZooAECAdapter),
        ("gymnasium:CartPole-v1", "gymnasium", None),
        ("gymnasium.envs.classic_control.cartpole:CartPoleEnv", "gymnasium", None),
    ],
)
def test_id_forms_and_api_detection(env_id: str, api: str, adapter: type | None) -> None:
    factory = resolve_env(env_id, {})
    assert (factory.env_id, factory.api) == (env_id, api)
    env = factory()
    if adapter is not None:
        assert isinstance(env, adapter)
    env.reset(seed=0)
    assert env.acting_agents()
    env.close()


def test_kwargs_reach_the_env() -> None:
    env = resolve_env("mpe2.simple_spread_v3", {"N": 2})()
    assert env.possible_agents == ["agent_0", "agent_1"]


def _error(env_id: str, kwargs: dict | None = None) -> str:
    with pytest.raises(EnvironmentSpecError) as info:
        resolve_env(env_id, kwargs or {})
    message = str(info.value)
    assert repr(env_id) in message, message
    return message


def test_unknown_module_names_the_id_and_suggests() -> None:
    message = _error("mpe2.simple_sprad_v3")
    assert "no module named 'mpe2.simple_sprad_v3'" in message
    assert "did you mean mpe2.simple_spread_v3" in message
    assert LIST_HINT in message


def test_unknown_gymnasium_id() -> None:
    message = _error("gymnasium:CartPol-v1")
    assert "not a registered gymnasium id" in message and "gymnasium:CartPole-v1" in message
    assert LIST_HINT in message


def test_module_without_env_factory() -> None:
    message = _error("json")
    assert "neither parallel_env() nor env()" in message and LIST_HINT in message


def test_factory_attribute_problems() -> None:
    assert "has no attribute 'make_it'" in _error("mpe2.simple_spread_v3:make_it")
    assert "not a callable" in _error("mpimarl.envs.loader:LIST_HINT")


def test_unsupported_return_type() -> None:
    message = _error("builtins:object")
    assert "builtins.object" in message and "neither a PettingZoo AECEnv or ParallelEnv nor a gymnasium.Env" in message


def test_factory_raising_names_the_kwargs() -> None:
    message = _error("pettingzoo.classic.connect_four_v3", {"board_size": 9})
    assert "building it with kwargs {'board_size': 9} raised TypeError" in message


def test_missing_dependency_is_distinguished_from_a_missing_module(uninstall: Callable[..., None]) -> None:
    uninstall("rlcard", "pettingzoo.classic.texas_holdem", "pettingzoo.classic.rlcard_envs")
    message = _error("pettingzoo.classic.texas_holdem_v4")
    assert "importing 'pettingzoo.classic.texas_holdem_v4' failed because its dependency 'rlcard' is not " \
           "installed" in message


@pytest.mark.parametrize("env_id", ["", "   ", "mpe2.simple_spread_v3:", ":env"])
def test_malformed_ids(env_id: str) -> None:
    with pytest.raises(EnvironmentSpecError, match="package.module"):
        resolve_env(env_id, {})


def test_env_factory_from_a_callable() -> None:
    factory = EnvFactory("tiny", "gymnasium", TinyEnv)
    env = factory()
    env.reset(seed=0)
    assert env.observe("agent")[0].shape == (4,)
    with pytest.raises(EnvironmentSpecError, match="'tiny'.*'aec'"):
        EnvFactory("tiny", "aec", TinyEnv)()
