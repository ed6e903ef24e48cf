"""Held-out judges of a run's final policies, as a study uses them (cached beside the run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpimarl.errors import ConfigError
from mpimarl.exploit import load_exploiters
from mpimarl.judging import JUDGES_FILE, JudgePlan, judge_run
from tests.test_exploit import ROCK, write_run


def test_bad_plans_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="episodes must be at least 1"):
        JudgePlan(("random",), episodes=0)
    with pytest.raises(ConfigError, match=r"history fractions must lie in \[0, 1\)"):
        JudgePlan(history=(1.0,))
    assert JudgePlan(("random",), (0.5,), exploit_steps=10).names == ["random", "own@0.5", "exploiter:10"]


@pytest.mark.mpi
@pytest.mark.slow
def test_a_rock_biased_population_is_judged_by_random_its_past_and_an_exploiter(tmp_path: Path) -> None:
    # player-0: v0 near uniform, v1 80% rock (final); the recorded population is v1 alone
    run = write_run(tmp_path / "run.h5", "rps_league.yaml", {"player-0": [None, ROCK]}, meta={("player-0", 1): 1.0})
    plan = JudgePlan(("random",), (0.0,), episodes=400, seed=3, exploit_steps=3000)
    rows, notes = judge_run(run, plan)
    assert not notes
    by = rows.set_index("judge")
    assert set(by.index) == {"random", "own@0", "exploiter:3000"} and (rows.episodes == 400).all()
    assert by.loc["random", "version"] == 1 and by.loc["own@0", "policy_id"] == "player-0"
    # against random and a near-uniform past self, 80% rock scores about 0.5 (rock-paper-scissors)
    assert 0.4 < by.loc["random", "score"] < 0.6 and 0.4 < by.loc["own@0", "score"] < 0.6
    # the exploiter plays paper: it wins 0.8 and draws 0.1, so the population scores about 0.15
    assert by.loc["exploiter:3000", "score"] < 0.25 and by.loc["exploiter:3000", "policy_id"] == "population"
    cached = pd.read_csv(tmp_path / JUDGES_FILE)
    assert len(cached) == 3 and len(load_exploiters(run)) == 1

    # asked again: answered from the cache, no new exploiter job, the same numbers
    again, _ = judge_run(run, plan)
    assert len(load_exploiters(run)) == 1
    assert np.allclose(again.set_index("judge").loc[by.index, "score"], by.score)


def test_history_judges_meet_the_nearest_snapshot_whose_weights_are_still_stored(tmp_path: Path) -> None:
    # player-0: v0 paper, v1 dropped by the retention policy, v2 rock (final). own@0.5 aims at v1; the
    # nearest stored versions are v0 and v2 (a tie: the earlier), so the rock-biased final meets paper.
    paper = np.array([0.1, 0.8, 0.1])
    run = write_run(tmp_path / "run.h5", "rps_league.yaml", {"player-0": [paper, ROCK, ROCK]},
                    overrides=["pool.keep_latest=1"], dropped=[("player-0", 1)])
    rows, notes = judge_run(run, JudgePlan((), (0.5,), episodes=200, seed=3))
    assert not notes and len(rows) == 1
    row = rows.iloc[0]
    assert row.judge == "own@0.5" and row.version == 2
    assert row.score < 0.3  # rock (80%) against paper (80%) loses: about 0.15
