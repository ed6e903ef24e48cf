"""Which ranks train which policy (no MPI): blocks of consecutive ranks, roles in turn."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mpimarl.config import load_config
from mpimarl.errors import ConfigError, WorldSizeError
from mpimarl.roles.context import RunContext
from tests.conftest import CONFIGS, REPO


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


def test_actors_follow_their_learner() -> None:
    """actors_per_learner per role: each policy's block is its learner, then its actors; the learner leads
    and is the only rank of its policy that is not an actor."""
    ctx = _ctx("simple_tag_roles", 9, "trainer.actors_per_learner={prey: 2}")
    assert [(u.policy_id, u.learners, u.actors) for u in ctx.units] == [
        ("predator-0", (1,), ()), ("prey-0", (2,), (3, 4)), ("predator-1", (5,), ()), ("prey-1", (6,), (7, 8))]
    assert ctx.leader_ranks == [1, 2, 5, 6]
    assert [r for r in range(1, 9) if ctx.is_actor(r)] == [3, 4, 7, 8]
    assert ctx.policy_id(4) == "prey-0" and ctx.config.min_world_size() == 5


def test_actor_counts_that_leave_ranks_over_are_refused() -> None:
    """A world size that cuts a learner's actors short names both keys and the valid sizes near it."""
    with pytest.raises(WorldSizeError) as err:
        _ctx("cartpole", 6, "trainer.actors_per_learner=2")
    assert "trainer.ranks_per_policy + trainer.actors_per_learner" in str(err.value)
    assert "Valid world sizes near it: 4, 7" in str(err.value)


@pytest.mark.parametrize(("overrides", "words"), [
    (["trainer.actors_per_learner=-1"], "trainer.actors_per_learner: {'*': -1}"),
    (["trainer.actors_per_learner=1", "trainer.ranks_per_policy=2"], "not both"),
    (["trainer.actors_per_learner=1", "ppo.critic=state", "ppo.advantage=coma"], "needs ppo.advantage 'gae'"),
])
def test_bad_actor_settings_name_the_key(overrides: list[str], words: str) -> None:
    """Negative counts, actors with learner groups, or what segments cannot carry: config errors."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "cartpole.yaml", overrides)
    assert words in str(err.value)


@pytest.mark.parametrize("config", ["connect_four_league", "speaker_listener_mappo", "leduc_psro"])
def test_every_start_up_check_runs_before_torch_is_imported(config: str) -> None:
    """Each rank loads the config and builds its RunContext (environment probe, roles, world size,
    network shapes, baselines) without torch, so a bad input ends a job before any rank pays for
    importing it (mpimarl/roles/launch.py); a bad world size is refused there too."""
    code = f"""
import sys
from mpimarl.config import load_config
from mpimarl.errors import WorldSizeError
from mpimarl.roles import launch
from mpimarl.roles.context import RunContext
cfg = load_config({str(CONFIGS / f"{config}.yaml")!r}, [])
ctx = RunContext.build(cfg, 3)
assert ctx.shape(next(iter(ctx.spec.roles))).layout
try:
    RunContext.build(cfg, 1)
except WorldSizeError:
    pass
else:
    raise SystemExit("world size 1 was accepted")
assert "torch" not in sys.modules, "torch was imported before the start-up checks ended"
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
