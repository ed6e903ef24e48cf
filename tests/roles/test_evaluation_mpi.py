"""Evaluation off rank 0 (`evaluation.workers: trainers`) under `mpiexec`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, run_mpi

pytestmark = pytest.mark.mpi

SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=6",
         "evaluation.pool_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4",
         "evaluation.workers=trainers"]


def _ratings(run: object) -> pd.DataFrame:
    df = run.ratings.drop(columns=["time", "generation"])  # type: ignore[attr-defined]
    return df.sort_values(["policy_id", "version", "elo"]).reset_index(drop=True)


@pytest.mark.slow
def test_trainers_play_the_evaluations_and_sync_runs_repeat(tmp_path: Path) -> None:
    """The trainers play the planned matches (rank 0 only the ones left after every trainer is done),
    the league rates them as usual, and two sync runs with one seed give the same ratings."""
    runs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        out = run_mpi(3, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(d), "--seed", "3",
                          *SHORT])
        assert out.returncode == 0, out.stderr
        runs.append(load_run(d / "run.h5"))
    a, b = runs
    jobs = a.attrs["evaluation_jobs"]
    assert jobs["remote"] > 0 and set(jobs["per_rank"]) == {"1", "2"}
    assert all(n > 0 for n in jobs["per_rank"].values())
    evals = a.matches[a.matches["kind"] == "evaluation"]
    # Every snapshot after version 0 met the random baseline for the planned number of episodes.
    vs_random = evals[(evals["opponent_id"] == "random") & evals["policy_id"].str.startswith("player-")]
    assert set(zip(vs_random.policy_id, vs_random.version)) >= {(p, v) for p in ("player-0", "player-1")
                                                                for v in (1, 2)}
    assert (vs_random["episodes"] == 6).all()
    pd.testing.assert_frame_equal(_ratings(a), _ratings(b))
