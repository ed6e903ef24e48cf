"""Cooperative evaluation without MPI: cross-play with partners a snapshot never trained with, and the
communication check (trained vs random partners on the same seeds), as planned and as recorded."""

from __future__ import annotations

import numpy as np
import pytest

from mpimarl.config import load_config
from mpimarl.errors import ConfigError
from mpimarl.league.league import RANDOM_PARTNERS_ID, League, SideResults
from mpimarl.league.pool import Snapshot, SnapshotKey
from mpimarl.roles.context import RunContext
from tests.conftest import CONFIGS


def _league(*overrides: str) -> League:
    cfg = load_config(CONFIGS / "speaker_listener_mappo.yaml", list(overrides))
    return League(cfg, RunContext.build(cfg, None).spec, seed=5)


def _snap(pid: str, version: int, role: str) -> Snapshot:
    parent = SnapshotKey(pid, version - 1) if version else None
    return Snapshot(SnapshotKey(pid, version), role, parent, 1, 1000 * version, 0.0, np.zeros(3, np.float32))


def _grow(league: League, versions: int) -> None:
    for v in range(versions):
        league.admit(_snap("speaker-0", v, "speaker"))
        league.admit(_snap("listener-0", v, "listener"))


def test_crossplay_pairs_the_latest_and_older_partners() -> None:
    """listener-0@5 plays with the newest speaker and with older speakers it never trained with."""
    league = _league("evaluation.crossplay_partners=3")
    _grow(league, 5)
    plan = league.admit(_snap("listener-0", 5, "listener"))
    assert plan is not None
    cross = [m for m in plan.matches if m.kind == "crossplay"]
    partners = [m.lineup[0].key for m in cross]
    assert partners[0] == SnapshotKey("speaker-0", 4)  # the latest partner first
    assert len(set(partners)) == len(partners) >= 2
    assert all(p.policy_id == "speaker-0" and p.version < 4 for p in partners[1:])
    assert all(m.episodes == league.cfg.evaluation.pool_episodes for m in cross)


def test_communication_check_is_planned_for_the_listener_only() -> None:
    league = _league()
    _grow(league, 2)
    speaker_plan = league.admit(_snap("speaker-0", 2, "speaker"))
    listener_plan = league.admit(_snap("listener-0", 2, "listener"))
    assert speaker_plan is not None and listener_plan is not None
    assert not [m for m in speaker_plan.matches if m.kind == "communication"]
    (check,) = [m for m in listener_plan.matches if m.kind == "communication"]
    assert check.lineup[0].key == SnapshotKey("speaker-0", 2)  # the trained speaker
    assert check.comparator == check.own  # the same listener ...
    assert check.comparator_lineup[0].is_random  # ... with a random speaker, on the same seeds


def test_communication_row_records_both_returns_and_is_not_rated() -> None:
    league = _league()
    _grow(league, 2)
    plan = league.admit(_snap("listener-0", 2, "listener"))
    assert plan is not None
    league.begin_evaluation(plan)
    (check,) = [m for m in plan.matches if m.kind == "communication"]
    trained, random = [-10.0, -12.0, -30.0], [-25.0, -24.0, -20.0]
    res = SideResults(trained, trained, [25] * 3, [[r, r] for r in trained], [[]] * 3, comparator_own=random)
    rows = league.record_match(check, res, 1.0, 2)
    assert set(rows) == {"matches"}  # no ratings or payoff entries: a policy is not rated against itself
    (row,) = rows["matches"]
    assert row["matchmaker"] == "communication" and row["opponent_id"] == RANDOM_PARTNERS_ID
    assert row["return_mean"] == pytest.approx(np.mean(trained))
    assert row["opponent_return_mean"] == pytest.approx(np.mean(random))
    assert (row["wins"], row["losses"]) == (2, 1)


def test_communication_roles_must_exist_and_be_cooperative() -> None:
    with pytest.raises(ConfigError, match="communication_roles: unknown roles \\['talker'\\]"):
        load_config(CONFIGS / "speaker_listener_mappo.yaml", ["evaluation.communication_roles=[talker]"])
    with pytest.raises(ConfigError, match="communication_roles is for cooperative tasks"):
        load_config(CONFIGS / "simple_tag_roles.yaml", ["evaluation.communication_roles=[prey]"])


def test_critic_and_advantage_can_be_set_per_role() -> None:
    """A role's own critic/advantage overrides ppo's: the listener learns with COMA, the speaker with a
    local critic, and their network layouts say so."""
    cfg = load_config(CONFIGS / "speaker_listener_team.yaml", [
        "task.roles=[{name: speaker, agents: 'speaker_.*'}, "
        "{name: listener, agents: 'listener_.*', critic: state, advantage: coma}]"])
    ctx = RunContext.build(cfg, None)
    assert not ctx.shape("speaker").central
    assert ctx.shape("listener").layout.endswith("/critic=17x5")
    assert ctx.learner_options("listener") == {"advantage": "coma", "others_size": 3}
