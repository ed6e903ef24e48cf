"""The list behind `python -m mpimarl envs`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from mpimarl.envs import list_environments, resolve_env


def test_lists_buildable_environments_with_their_api() -> None:
    listed = dict(list_environments())
    assert listed["pettingzoo.classic.connect_four_v3"] == "aec"
    assert listed["mpe2.simple_spread_v3"] == "parallel"
    assert listed["gymnasium:CartPole-v1"] == "gymnasium"
    # Packages and helper modules that are not environments are left out.
    assert "pettingzoo.classic.connect_four" not in listed
    assert not any(env_id.startswith("mpe2._") or env_id.endswith("all_modules") for env_id in listed)
    # The api agrees with what the loader resolves.
    for env_id in ("mpe2.simple_tag_v3", "pettingzoo.classic.tictactoe_v3", "gymnasium:Pendulum-v1"):
        assert resolve_env(env_id, {}).api == listed[env_id]


def test_skips_environments_with_missing_dependencies(uninstall: Callable[..., None]) -> None:
    listed = dict(list_environments())
    assert listed["pettingzoo.classic.texas_holdem_v4"] == "aec"  # installed here: rlcard is a dependency
    uninstall("rlcard", "pettingzoo.classic.texas_holdem", "pettingzoo.classic.rlcard_envs")
    listed = dict(list_environments())
    assert "pettingzoo.classic.texas_holdem_v4" not in listed
    assert listed["pettingzoo.classic.connect_four_v3"] == "aec"  # the rest of the package is still listed
    if importlib.util.find_spec("mujoco") is not None:  # the robotics extra
        assert listed["gymnasium:HalfCheetah-v5"] == "gymnasium"
    uninstall("mujoco", "gymnasium.envs.mujoco")
    listed = dict(list_environments())
    assert "gymnasium:HalfCheetah-v5" not in listed and "gymnasium:CartPole-v1" in listed
    # gymnasium's placeholders for mujoco-py and shimmy only raise "install X".
    assert "gymnasium:HalfCheetah-v2" not in listed and "gymnasium:GymV26Environment-v0" not in listed
