"""Which ranks train which policy (no MPI): blocks of consecutive ranks, roles in turn."""

from __future__ import annotations

import pytest

from mpimarl.config import load_config
from mpimarl.errors import ConfigError, WorldSizeError
from mpimarl.roles.context import RunContext
from tests.conftest import CONFIGS


def _ctx(config: str, world: int, *overrides: str) -> RunContext:
    return RunContext.build(load_config(CONFIGS / f"{config}.yaml", list(overrides)), world)


def test_one_rank_per_policy_keeps_the_round_robin_layout() -> None:
    """Rank 1 -> first role, rank 2 -> second, ...: the layout of runs without groups is unchanged."""
    ctx = _ctx("simple_tag_roles", 5)
    assert [(r, ctx.policy_id(r)) for r in range(1, 5)] == [
        (1, "predator-0"), (2, "prey-0"), (3, "predator-1"), (4, "prey-1")]
    assert ctx.leader_ranks == [1, 2, 3, 4]


def test_groups_take_consecutive_ranks_per_role() -> None:
    """ranks_per_policy per role: each policy's ranks are consecutive and its first rank leads."""
    ctx = _ctx("simple_tag_roles", 7, "trainer.ranks_per_policy={prey: 2}")
    assert [(u.policy_id, u.ranks) for u in ctx.units] == [
        ("predator-0", (1,)), ("prey-0", (2, 3)), ("predator-1", (4,)), ("prey-1", (5, 6))]
    assert ctx.leader_ranks == [1, 2, 4, 5]
    assert ctx.policy_id(3) == "prey-0" and ctx.trainer_role(6) == "prey"
    assert ctx.config.min_world_size() == 4


@pytest.mark.parametrize(("world", "words"), [
    (6, "the last 1 rank(s) (5..5) cannot form a whole block of role 'prey' (2 ranks)"),
    (3, "at least 4 ranks are needed"),
])
def test_ranks_that_do_not_fill_whole_groups_are_refused(world: int, words: str) -> None:
    """Left-over ranks (a group cut short or spanning roles) or too few ranks: one error naming the sizes."""
    with pytest.raises(WorldSizeError) as err:
        _ctx("simple_tag_roles", world, "trainer.ranks_per_policy={prey: 2}")
    assert words in str(err.value)
    if world == 6:
        assert "Valid world sizes near it: 4, 5, 7" in str(err.value)


def test_bad_group_sizes_name_the_key() -> None:
    """A group size below 1 or an unknown role is a config error naming trainer.ranks_per_policy."""
    with pytest.raises(ConfigError, match="trainer.ranks_per_policy"):
        load_config(CONFIGS / "connect_four_league.yaml", ["trainer.ranks_per_policy=0"])
    with pytest.raises(ConfigError, match=r"unknown roles \['prey'\]"):
        load_config(CONFIGS / "connect_four_league.yaml", ["trainer.ranks_per_policy={prey: 2}"])
