"""benchmarks/league.py's step-matched readings: a table compares runs at equal env steps, so a mark
the run never reached must read as missing, not as the run's final value."""

from __future__ import annotations

import argparse
import math

import pandas as pd

import benchmarks.common
from benchmarks import league
from benchmarks.league import _at_steps


def test_a_step_mark_reads_the_last_generation_within_it_and_nothing_past_the_run() -> None:
    curve = pd.DataFrame({"steps_per_trainer": [0, 1_000_000, 2_000_000, 3_000_000],
                          "exploitability": [0.46, 0.30, 0.20, 0.25]})
    assert _at_steps(curve, 2_500_000) == 0.20   # the last generation within 2.5M steps
    assert _at_steps(curve, 3_000_000) == 0.25   # exactly at the end
    assert math.isnan(_at_steps(curve, 4_000_000))  # the run ended at 3M: no reading at 4M
    assert math.isnan(_at_steps(curve.iloc[:0], 1_000_000))


def test_c4_evidence_compares_one_budgets_setups_run_by_run(tmp_path, monkeypatch) -> None:
    """`c4_evidence --budget 30min` reads that budget's runs only: each run's two final policies are
    averaged, then the runs; a difference column is one setup minus the other over runs."""
    monkeypatch.setattr(league, "RESULTS", tmp_path)
    monkeypatch.setattr(benchmarks.common, "RESULTS", tmp_path)
    scores = {"default30_seed1": (0.9, 0.8), "default30_seed2": (0.7, 0.6),
              "noscripted30_seed1": (0.5, 0.3), "selfplay30_seed1": (0.2, 0.4),
              "default_seed1": (0.0, 0.0)}  # a 2M-step run: not part of this budget
    for label, (p0, p1) in scores.items():
        pd.DataFrame({"policy_id": ["player-0", "player-1"], "judge": ["tactical", "tactical"],
                      "score": [p0, p1]}).to_csv(tmp_path / f"league_connect_four_{label}.csv", index=False)
    league.c4_evidence(argparse.Namespace(budget="30min", runs=tmp_path / "runs"))
    table = pd.read_csv(tmp_path / "league_connect_four_evidence_30min.csv").set_index("judge")
    assert table.loc["runs", "league"] == "2" and table.loc["runs", "self-play"] == "1"
    assert table.loc["tactical", "league"] == "0.750 (0.85, 0.65)"
    assert table.loc["tactical", "self-play"] == "0.300 (0.30)"
    assert table.loc["tactical", "league - self-play"].startswith("+0.450 ")
    assert table.loc["tactical", "league, no scripted - self-play"] == "+0.100 (a single run on one side: no interval)"
    assert not (tmp_path / "league_connect_four_evidence.csv").exists()
    assert (tmp_path / "league_connect_four_evidence_30min.png").read_bytes()[:4] == b"\x89PNG"  # its figure


def test_exploiter_steps_to_a_score_interpolate_between_curve_points() -> None:
    curve = pd.DataFrame({"env_steps": [200_000, 400_000, 600_000], "score": [0.2, 0.7, 0.95]})
    assert league._steps_to(curve, 0.9) == 600_000  # the first point at or past 0.9
    assert league._steps_to_interpolated(curve, 0.5) == 320_000  # 3/5 of the way from 0.2 to 0.7
    assert league._steps_to_interpolated(curve, 0.1) == 200_000  # reached by the first point
    assert math.isnan(league._steps_to_interpolated(curve, 0.99))  # never reached


def test_repeated_set_options_all_reach_the_run() -> None:
    """`--set a --set b` keeps both overrides (a repeated option used to keep only the last: a
    self-play comparison silently trained the default matchmaker)."""
    args = league.parser().parse_args(["connect_four", "--set", "matchmaking.strategy=latest",
                                       "--set", "ppo.epochs=2", "ppo.minibatches=4"])
    assert args.set == ["matchmaking.strategy=latest", "ppo.epochs=2", "ppo.minibatches=4"]
    assert league.parser().parse_args(["connect_four"]).set == []
