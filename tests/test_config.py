"""Config validation: one clear message naming the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpimarl.config import apply_overrides, load_config, parse_config
from mpimarl.errors import ConfigError
from tests.conftest import CONFIGS

MINIMAL = {"env": {"id": "gymnasium:CartPole-v1"}, "task": {"roles": [{"name": "agent"}]}}


def test_shipped_configs_load() -> None:
    """Every YAML file in configs/ is a valid config."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.task.roles, path


def test_unknown_key_suggests_the_nearest_valid_key() -> None:
    """A typo names the nearest valid key of its own section."""
    with pytest.raises(ConfigError, match=r"ppo\.learnig_rate.*did you mean 'learning_rate'"):
        parse_config({**MINIMAL, "ppo": {"learnig_rate": 0.1}})
    with pytest.raises(ConfigError, match=r"did you mean 'schedule'"):
        parse_config({**MINIMAL, "schedul": {}})


def test_wrong_type_and_literal_name_key_value_and_allowed() -> None:
    """A bad value names the dotted key, the value and the allowed values."""
    with pytest.raises(ConfigError, match=r"'ppo\.epochs' = 'many'"):
        parse_config({**MINIMAL, "ppo": {"epochs": "many"}})
    with pytest.raises(ConfigError, match=r"'schedule\.mode' = 'fast'.*'sync' or 'async'"):
        parse_config({**MINIMAL, "schedule": {"mode": "fast"}})
    with pytest.raises(ConfigError, match=r"matchmaking\.strategy"):
        parse_config({**MINIMAL, "matchmaking": {"strategy": "elo"}})


def test_bounds_and_cross_field_rules() -> None:
    """Out-of-range values and contradictory fields are refused at load."""
    with pytest.raises(ConfigError, match=r"ppo\.num_envs"):
        parse_config({**MINIMAL, "ppo": {"num_envs": 0}})
    with pytest.raises(ConfigError, match=r"rollout_steps.*minibatches"):
        parse_config({**MINIMAL, "ppo": {"rollout_steps": 16, "minibatches": 32}})
    with pytest.raises(ConfigError, match=r"role names must be unique"):
        parse_config({"env": MINIMAL["env"], "task": {"roles": [{"name": "a"}, {"name": "a"}]}})
    with pytest.raises(ConfigError, match=r"missing required key 'env'"):
        parse_config({"task": MINIMAL["task"]})


def test_overrides_parse_yaml_values_and_check_paths() -> None:
    """key.path=value overrides parse numbers/booleans/lists and refuse unknown sections."""
    data = apply_overrides({**MINIMAL}, ["ppo.learning_rate=1e-3", "ppo.hidden=[32, 32]", "ppo.anneal_lr=true"])
    cfg = parse_config(data)
    assert cfg.ppo.learning_rate == pytest.approx(1e-3)
    assert cfg.ppo.hidden == [32, 32] and cfg.ppo.anneal_lr is True
    with pytest.raises(ConfigError, match=r"did you mean 'ppo'"):
        apply_overrides({**MINIMAL}, ["ppp.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        apply_overrides({**MINIMAL}, ["ppo.learning_rate"])


def test_cli_flags_override_file(tmp_path: Path) -> None:
    """--steps and --seed land in schedule.total_steps and seed."""
    cfg = load_config(CONFIGS / "cartpole.yaml", steps=1234, seed=9)
    assert cfg.schedule.total_steps == 1234 and cfg.seed == 9


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    """A missing, empty or non-YAML file is named."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)


def test_vtrace_lambda_defaults_to_the_gae_lambda() -> None:
    """trainer.vtrace_lambda unset: actors' learners use ppo.gae_lambda; set, it wins; outside [0, 1] is refused."""
    assert parse_config({**MINIMAL, "ppo": {"gae_lambda": 0.8}}).vtrace_lambda == 0.8
    assert parse_config({**MINIMAL, "trainer": {"vtrace_lambda": 1.0}}).vtrace_lambda == 1.0
    with pytest.raises(ConfigError, match=r"trainer\.vtrace_lambda"):
        parse_config({**MINIMAL, "trainer": {"vtrace_lambda": 1.2}})


def test_straggler_cutoff_needs_the_async_schedule() -> None:
    """A timing-dependent cut-off would break sync determinism: refused naming the key; async accepts it."""
    with pytest.raises(ConfigError, match=r"trainer\.straggler_cutoff 0\.5 needs schedule\.mode 'async'"):
        parse_config({**MINIMAL, "trainer": {"straggler_cutoff": 0.5}, "schedule": {"mode": "sync"}})
    cfg = parse_config({**MINIMAL, "trainer": {"straggler_cutoff": 0.5}, "schedule": {"mode": "async"}})
    assert cfg.trainer.straggler_min_share == 0.25
    with pytest.raises(ConfigError, match=r"trainer\.straggler_cutoff"):
        parse_config({**MINIMAL, "trainer": {"straggler_cutoff": 0.0}})
