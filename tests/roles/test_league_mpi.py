"""The league under `mpiexec`: free-for-all ratings, payoff-driven matchmakers in both schedules,
exact exploitability on OpenSpiel games, asymmetric ratings, and the league's bad-input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, run_mpi

pytestmark = pytest.mark.mpi

SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=6",
         "evaluation.pool_episodes=4", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4",
         "evaluation.par_episodes=20"]


@pytest.mark.slow
def test_five_player_free_for_all_trains_evaluates_and_rates(tmp_path: Path) -> None:
    """Five seats of one role: each game is ranked, and a snapshot in several seats counts once."""
    out = run_mpi(3, ["train", str(CONFIGS / "holdem_ffa.yaml"), "--run-dir", str(tmp_path), *SHORT])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    evals = run.matches[run.matches.kind == "evaluation"]
    pool = evals[evals.matchmaker == "pool"]
    assert len(pool) > 0
    assert all(len(o.split("+")) == 4 for o in pool.opponent_id)  # four other seats, one label
    ratings = run.ratings[run.ratings.policy_id.str.startswith("player-")]
    assert np.isfinite(ratings[["elo", "mu", "sigma"]]).all().all()
    # One game counts once per snapshot: never more rated games than episodes it played.
    for (pid, version), group in ratings.groupby(["policy_id", "version"]):
        played = evals[(evals.policy_id == pid) & (evals.version == version)].episodes.sum()
        assert group.games.max() <= played + evals[evals.opponent_id.str.contains(f"{pid}@{version}",
                                                                                  regex=False)].episodes.sum()
    assert set(run.payoff.row_id) >= {"player-0@1", "player-1@1"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("strategy", ["pfsp", "psro"])
def test_payoff_driven_matchmakers_run_in_both_schedules(strategy: str, mode: str, tmp_path: Path) -> None:
    """pfsp and psro draw training line-ups from the payoff table; the matchmaker is recorded per match."""
    out = run_mpi(3, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path),
                      f"matchmaking.strategy={strategy}", f"schedule.mode={mode}", "--steps", "4500",
                      *SHORT[2:]])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    training = run.matches[run.matches.kind == "training"]
    assert set(training.matchmaker) <= {strategy, "baseline"} and strategy in set(training.matchmaker)
    assert len(run.payoff) > 0 and (run.payoff.score_low <= run.payoff.score).all()
    meta = run.meta[run.meta.matchmaker == strategy]
    assert len(meta) > 0
    for _, group in meta.groupby(["generation", "time", "role"]):
        assert group.weight.sum() == pytest.approx(1.0, abs=1e-6)
    # The tactical baseline is an evaluation anchor with a calibrated, fixed rating.
    assert "tactical" in set(run.matches.opponent_id)
    assert "player/tactical" in run.attrs["anchors"]


@pytest.mark.slow
def test_kuhn_psro_records_exact_payoffs_and_exploitability(tmp_path: Path) -> None:
    """OpenSpiel Kuhn poker: exact payoff entries, and the exploitability of every policy and the population."""
    out = run_mpi(3, ["train", str(CONFIGS / "kuhn_psro.yaml"), "--run-dir", str(tmp_path), "--steps", "6000",
                      "schedule.steps_per_generation=2000", "ppo.num_envs=8", "ppo.rollout_steps=512",
                      "evaluation.baseline_episodes=10", "ppo.epochs=2"])  # 2 passes, not 40: no quality is checked
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    exact = run.payoff[run.payoff.source == "exact"]
    assert len(exact) > 0
    # Zero-sum: every exact entry's two returns cancel.
    assert np.allclose(exact.return_mean + exact.opponent_return_mean, 0.0, atol=1e-9)
    ex = run.exploitability
    assert set(ex.policy_id) == {"player-0", "player-1", "population"}
    assert ((ex.exploitability >= 0) & (ex.exploitability <= 2.0)).all()
    # Untrained networks are close to uniform: exploitability near uniform Kuhn's 0.458 at generation 0.
    first = ex[ex.generation == ex.generation.min()]
    assert (first.exploitability - 0.458).abs().max() < 0.25


@pytest.mark.slow
def test_asymmetric_roles_have_their_own_anchors_and_both_can_win(tmp_path: Path) -> None:
    """simple_tag with the par outcome: prey can win evaluation games, and ratings are per role."""
    out = run_mpi(3, ["train", str(CONFIGS / "simple_tag_roles.yaml"), "--run-dir", str(tmp_path), *SHORT])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert set(run.attrs["par"]) == {"predator", "prey"}
    evals = run.matches[(run.matches.kind == "evaluation") & (run.matches.matchmaker != "par")]
    prey = evals[evals.role == "prey"]
    assert prey.wins.sum() > 0 and prey.losses.sum() > 0
    assert set(run.ratings.role) == {"predator", "prey"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["matchmaking.strategy=elo_league"], "matchmaking.strategy"),
        (["matchmaking.pfsp_weighting=steep"], "matchmaking.pfsp_weighting"),
        (["baselines=[{name: foe, policy: 'nowhere.module:act'}]"], "nowhere.module"),
        (["baselines=[{name: foe, policy: tests.fixtures.bad_baselines:illegal}]"], "illegal"),
        (["evaluation.exploitability=true"], "evaluation.exploitability"),
        (["matchmaking.strategy=psro", "evaluation.pool_episodes=0"], "pool_episodes"),
    ],
)
def test_league_bad_input_is_one_clear_error(overrides: list[str], named: str, tmp_path: Path) -> None:
    """Unknown matchmaker or weighting, an unimportable or illegal scripted policy, exploitability on a
    game that cannot compute it, psro without payoff entries: exit 2 before any work, one message."""
    out = run_mpi(3, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path), *overrides],
                  timeout=120)
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("mpimarl: error:") == 1
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_main_exploiter_trains_only_against_the_latest_mains(tmp_path: Path, mode: str) -> None:
    """`matchmaking.exploiters=1` on 4 ranks: player-2 is an exploiter whose training line-ups are the
    newest snapshots of player-0 and player-1 (no baselines, no old snapshots), recorded as such."""
    out = run_mpi(4, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "--steps", "4500", "matchmaking.exploiters=1", f"schedule.mode={mode}"])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["exploiters"] == ["player-2"]
    training = run.matches[run.matches.kind == "training"]
    exploiter = training[training.policy_id == "player-2"]
    assert len(exploiter) > 0 and set(exploiter.matchmaker) == {"exploiter"}
    assert set(exploiter.opponent_id) <= {"player-0", "player-1"}
    mains = training[training.policy_id != "player-2"]
    assert "exploiter" not in set(mains.matchmaker)
    if mode == "sync":  # generation g trains against the mains' version g exactly
        assert (exploiter.opponent_version == exploiter.generation).all()
