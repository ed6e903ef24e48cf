"""The command line without MPI: check, envs, and user errors."""

from __future__ import annotations

import pytest

from tests.conftest import CONFIGS, run_cli


@pytest.mark.slow
def test_check_validates_config_and_environment() -> None:
    """`check` builds the environment, maps roles and runs random episodes."""
    out = run_cli(["check", str(CONFIGS / "simple_tag_roles.yaml")])
    assert out.returncode == 0, out.stderr
    assert "role predator: agents adversary_0, adversary_1, adversary_2" in out.stdout
    assert "role prey: agents agent_0" in out.stdout
    assert "at least 3 MPI ranks" in out.stdout


@pytest.mark.slow
def test_check_reports_a_role_rule_matching_nothing() -> None:
    """A role rule that matches no agent is named, exit code 2, no traceback."""
    out = run_cli(["check", str(CONFIGS / "simple_tag_roles.yaml"), "task.roles=[{name: a, agents: 'x_.*'}]"])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "x_.*" in out.stderr


def test_envs_lists_the_shipped_environments() -> None:
    """`envs` lists the environments the configs use."""
    out = run_cli(["envs"])
    assert out.returncode == 0
    for env_id in ("pettingzoo.classic.connect_four_v3", "mpe2.simple_tag_v3", "mpe2.simple_spread_v3",
                   "mpe2.simple_speaker_listener_v4", "gymnasium:CartPole-v1"):
        assert env_id in out.stdout


def test_unknown_argument_is_refused() -> None:
    """Stray flags are refused by the parser."""
    out = run_cli(["check", str(CONFIGS / "cartpole.yaml"), "--bogus"])
    assert out.returncode == 2 and "--bogus" in out.stderr
