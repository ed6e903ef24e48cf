"""`mpimarl evaluate`: a round robin of stored snapshots and baselines on real run files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from mpimarl.arena import CSV_COLUMNS, EVAL_SEED_BASE, evaluation_seeds, round_robin, wilson_interval
from mpimarl.cli import main
from mpimarl.league.payoff import wilson_interval as payoff_wilson
from tests.test_analysis import REPO, write_policy_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def connect_four_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained connect-four policies: player-0 at versions 0 and 1, player-1 at version 0."""
    return write_policy_run(tmp_path_factory.mktemp("arena") / "run.h5")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mpimarl: error: ")
    return err


def test_evaluate_table_and_csv_with_tactical_above_untrained(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "arena.csv"
    argv = ["evaluate", str(connect_four_run), "--vs", "random,tactical", "--episodes", "20", "--csv", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    entrants = ["player-0@1", "player-1@0", "random", "tactical"]  # the FINAL snapshot of player-0
    assert "player-0@0" not in printed
    header = next(line for line in printed.splitlines() if "mean score" in line)
    assert header.split() == [*entrants, "mean", "score"]
    assert "[" in printed and "20 episodes per pairing" in printed

    results = pd.read_csv(out)
    assert tuple(results.columns) == CSV_COLUMNS
    assert len(results) == 4 * 3  # every ordered pair of distinct entrants
    assert set(results.entrant) == set(entrants) == set(results.opponent)
    assert (results.episodes == 20).all()
    assert (results.wins + results.draws + results.losses == results.episodes).all()
    assert results.groupby("entrant").episodes.sum().to_dict() == dict.fromkeys(entrants, 60)
    pair = results.set_index(["entrant", "opponent"])
    for (a, b), row in pair.iterrows():  # a two-seat game: each pairing is its mirror image
        mirror = pair.loc[(b, a)]
        assert (row.wins, row.draws, row.losses) == (mirror.losses, mirror.draws, mirror.wins)
        assert row.score + mirror.score == pytest.approx(1.0)
        assert row.score_low <= row.score <= row.score_high
    for policy in ("player-0@1", "player-1@0"):
        assert pair.loc[("tactical", policy)].score >= 0.8  # wins now, blocks, else random: beats untrained play
        assert pair.loc[(policy, "tactical")].score_high < 0.5
    assert pair.loc[("tactical", "random")].score > pair.loc[("random", "tactical")].score


def test_arena_is_reproducible_and_seeds_are_fresh(connect_four_run: Path) -> None:
    first = round_robin([connect_four_run], "random", episodes=4, seed=3)
    again = round_robin([connect_four_run], "random", episodes=4, seed=3)
    pd.testing.assert_frame_equal(first.results, again.results)
    seeds = evaluation_seeds(3, 4)
    assert seeds[0] > EVAL_SEED_BASE and len(set(seeds)) == 4
    assert wilson_interval(7.5, 20) == payoff_wilson(7.5, 20)


def test_several_runs_are_labelled_by_run(tmp_path: Path) -> None:
    a = write_policy_run(tmp_path / "alpha" / "run.h5", versions={"player-0": 1})
    b = write_policy_run(tmp_path / "beta" / "run.h5", versions={"player-0": 3})
    result = round_robin([a, b], "random", episodes=2)
    assert result.rows == ["alpha/player-0@0", "beta/player-0@2", "random"]
    assert (result.results.episodes == 2).all() and len(result.results) == 6


def test_cooperative_partners_and_comparator(tmp_path: Path) -> None:
    path = write_policy_run(tmp_path / "run.h5", REPO / "configs" / "speaker_listener_team.yaml",
                            versions={"speaker-0": 1, "listener-0": 1})
    result = round_robin([path], "random,listener_heuristic", episodes=3)
    frame = result.results.set_index(["entrant", "opponent"])
    # The speaker meets random and the heuristic listener and the stored listener; the listener
    # cannot take the heuristic (it only plays the listener), so it gets random and the speaker.
    assert set(frame.index) == {("speaker-0@0", "random"), ("speaker-0@0", "listener_heuristic"),
                                ("speaker-0@0", "listener-0@0"), ("listener-0@0", "random"),
                                ("listener-0@0", "speaker-0@0")}
    assert (frame.wins + frame.draws + frame.losses == 3).all()
    assert frame.return_mean.notna().all() and frame.opponent_return_mean.notna().all()
    assert "team return" in result.text()


def test_bad_inputs_exit_2_with_one_message(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.h5"
    assert main(["evaluate", str(missing)]) == 2
    assert str(missing) in _error_line(capsys)
    assert main(["evaluate", str(connect_four_run), "--vs", "tacticle"]) == 2
    assert "did you mean 'tactical'" in _error_line(capsys)
    assert main(["evaluate", str(connect_four_run), "--episodes", "0"]) == 2
    assert "--episodes" in _error_line(capsys)
    cartpole = write_policy_run(tmp_path / "cartpole.h5", REPO / "configs" / "cartpole.yaml", versions={"agent-0": 1})
    assert main(["evaluate", str(connect_four_run), str(cartpole)]) == 2
    assert "env ids differ" in _error_line(capsys)
    empty = write_policy_run(tmp_path / "empty.h5", versions={})
    assert main(["evaluate", str(empty)]) == 2
    assert "stores no policy snapshots" in _error_line(capsys)


def test_evaluate_against_search_players_of_two_depths(
    connect_four_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--vs negamax:depth=1,negamax:depth=3 --vs-only`: each final snapshot against each depth, nothing else."""
    out = tmp_path / "search.csv"
    argv = ["evaluate", str(connect_four_run), "--vs", "negamax:depth=1,negamax:depth=3", "--vs-only",
            "--episodes", "6", "--csv", str(out)]
    assert main(argv) == 0
    results = pd.read_csv(out)
    assert set(zip(results.entrant, results.opponent)) == {
        (p, d) for p in ("player-0@1", "player-1@0") for d in ("negamax:depth=1", "negamax:depth=3")}
    assert (results.episodes == 6).all() and (results.score_high < 0.5).all()  # untrained vs search
    assert "negamax:depth=3" in capsys.readouterr().out


def test_judge_scores_chosen_snapshots_against_search_players(connect_four_run: Path) -> None:
    from mpimarl.analysis import load_run
    from mpimarl.arena import judge

    frame = judge(connect_four_run, "tactical,negamax:depth=2", episodes=4, policies=["player-0@0", "player-1"])
    assert list(frame.columns) == list(CSV_COLUMNS)
    assert list(zip(frame.entrant, frame.opponent)) == [
        ("player-0@0", "tactical"), ("player-0@0", "negamax:depth=2"),
        ("player-1@0", "tactical"), ("player-1@0", "negamax:depth=2")]
    assert (frame.episodes == 4).all() and (frame.score_low <= frame.score).all()
    again = judge(load_run(connect_four_run), ["tactical", "negamax:depth=2"], episodes=4,
                  policies=["player-0@0", "player-1"])
    pd.testing.assert_frame_equal(frame, again)


def test_bad_search_player_parameters_exit_2(connect_four_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for vs, message in [("negamax:depth=0", "depth=0"), ("negamax:4", "KEY=VALUE"),
                        ("negamax:dpeth=4", "did you mean 'depth'"), ("random:depth=2", "takes no parameters")]:
        assert main(["evaluate", str(connect_four_run), "--vs", vs]) == 2
        assert message in _error_line(capsys)
