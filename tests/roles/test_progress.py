"""Rank 0's progress line: what it says about each policy, for competitive and cooperative runs."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpimarl.config import load_config
from mpimarl.league.league import League, SideResults
from mpimarl.league.pool import Snapshot, SnapshotKey
from mpimarl.roles.context import RunContext
from mpimarl.roles.progress import Progress
from tests.conftest import CONFIGS


@dataclass
class _Trainer:
    """The part of rank 0's record of a trainer that the display reads (roles.progress.TrainerProgress)."""

    policy_id: str
    published: int
    env_steps: int
    last_row: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Server:
    """What the display reads of rank 0 (roles.progress.ProgressSource): trainers by rank, the league."""

    trainers: dict[int, _Trainer]
    league: League


def _evaluated_league(config: str, policy_id: str, role: str, own: list[float], other: list[float]) -> League:
    """A real league of `config` whose policy has published versions 0 and 1, version 1 evaluated
    against the random baseline (or comparator) with returns `own` for the policy, `other` for random."""
    cfg = load_config(CONFIGS / f"{config}.yaml", [])
    league = League(cfg, RunContext.build(cfg, None).spec, seed=5)
    for version in (0, 1):
        parent = SnapshotKey(policy_id, version - 1) if version else None
        plan = league.admit(Snapshot(SnapshotKey(policy_id, version), role, parent, 1, 1000 * version, 0.0,
                                     np.zeros(3, np.float32)))
    assert plan is not None
    league.begin_evaluation(plan)
    for match in plan.matches:  # the evaluated policy in seat 0, its line-up after it
        against = (match.comparator,) if match.comparator is not None else match.lineup
        if match.kind not in ("baseline", "comparator") or not all(i.is_random for i in against):
            continue
        n = len(own)
        res = SideResults(own, other, [10] * n, [[a, b] for a, b in zip(own, other)],
                          [["evaluated", *match.lineup]] * n,
                          comparator_own=other if match.comparator is not None else None)
        league.record_match(match, res, 1.0, 1)
    return league


def _line(league: League, policy_id: str) -> str:
    stream = io.StringIO()
    progress = Progress(10_000, interval_s=60.0, stream=stream, bar=False)
    trainer = _Trainer(policy_id, 1, 2000, {"episode_return_mean": 17.5})
    progress.close(_Server({1: trainer}, league))
    return stream.getvalue()


def test_a_cooperative_policy_shows_its_team_return_not_a_win_rate() -> None:
    """CartPole (a one-team cooperative task): the newest evaluation's team return, no vs_random."""
    league = _evaluated_league("cartpole", "agent-0", "agent", own=[120.0, 180.0], other=[20.0, 22.0])
    line = _line(league, "agent-0")
    assert "agent-0 v1 ret +17.50 eval +150.00" in line, line
    assert "vs_random" not in line


def test_a_competitive_policy_shows_its_scores_against_the_baselines() -> None:
    league = _evaluated_league("connect_four_league", "player-0", "player", own=[1.0, 1.0], other=[-1.0, -1.0])
    line = _line(league, "player-0")
    assert "player-0 v1 ret +17.50 vs_random 100%" in line, line
    assert " eval " not in line
