"""A sweep file launched with one command, and the study's figures and tables made from its run files."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mpimarl.errors import ConfigError
from mpimarl.study import check_setups, comparisons, game_of, interval, parse_targets
from mpimarl.sweep import load_sweep
from tests.conftest import CONFIGS, REPO


def _write_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(f"""
name: tiny
root: {tmp_path / "runs"}
seeds: 0-1
ranks: 2
args: [schedule.steps_per_generation=2000, evaluation.baseline_episodes=8]
setups:
  - name: rps
    config: {CONFIGS / "rps_league.yaml"}
    overrides: [schedule.total_steps=4000]
    grid:
      matchmaking.strategy: [latest, psro]
  - name: sl
    config: {CONFIGS / "speaker_listener_team.yaml"}
    ranks: 3
    overrides: [schedule.total_steps=1000, schedule.steps_per_generation=500, ppo.rollout_steps=128,
                ppo.num_envs=4, ppo.epochs=1, evaluation.pool_episodes=2, evaluation.par_episodes=8]
""")
    return sweep


def test_sweep_files_expand_setups_grids_and_seeds_in_a_fixed_order(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"""
seeds: 0-1
setups:
  - name: a
    config: {CONFIGS / "kuhn_psro.yaml"}
    grid: {{matchmaking.strategy: [latest, psro], ranks: [2, 4]}}
  - config: {CONFIGS / "rps_league.yaml"}
    ranks: 5
""")
    runs = load_sweep(sweep, root="out")
    assert [(r.setup, r.seed, r.ranks) for r in runs[:4]] == [("a-latest-2", 0, 2), ("a-latest-2", 1, 2),
                                                             ("a-latest-4", 0, 4), ("a-latest-4", 1, 4)]
    assert [r.index for r in runs] == list(range(10))
    assert runs[-1].setup == "rps_league" and runs[-1].ranks == 5 and runs[-1].run_dir == "out/rps_league-seed1"
    # the grid value and the setup label reach `mpimarl train` as overrides; ranks is not a config key
    assert runs[4].args == ("matchmaking.strategy=psro", "name=a-psro-2")
    assert runs[4].train_args()[-2:] == ["matchmaking.strategy=psro", "name=a-psro-2"]


@pytest.mark.parametrize("text, message", [
    ("setups: []", "non-empty list"),
    ("setups: [{config: nowhere.yaml}]", "config file not found: nowhere.yaml"),
    ("seeds: 0-1\nsetups: [{config: CFG, colour: red}]", r"unknown key\(s\) \['colour'\]"),
    ("setups: [{config: CFG, ranks: 1}]", "at least 2"),
    ("setups: [{config: CFG, grid: {ppo.epochs: []}}]", "non-empty lists"),
    ("setups: [{config: CFG}, {config: CFG}]", "occurs twice"),
    ("seeds: x\nsetups: [{config: CFG}]", "is not a seed"),
])
def test_bad_sweep_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(text.replace("CFG", str(CONFIGS / "rps_league.yaml")))
    with pytest.raises(ConfigError, match=message):
        load_sweep(sweep)


def test_study_helpers() -> None:
    assert game_of("pettingzoo.classic.connect_four_v3") == "connect_four"
    assert game_of("openspiel:kuhn_poker") == "kuhn_poker"
    assert game_of("gymnasium:CartPole-v1") == "CartPole"
    mean, low, high = interval([1.0, 2.0, 3.0, math.nan])
    assert mean == pytest.approx(2.0) and low == pytest.approx(2.0 - 4.303 / math.sqrt(3), abs=1e-3)
    assert high == pytest.approx(2.0 + 4.303 / math.sqrt(3), abs=1e-3)
    assert parse_targets(["kuhn_poker=0.2"])["kuhn_poker"] == 0.2
    with pytest.raises(ConfigError, match="GAME=NUMBER"):
        parse_targets(["kuhn_poker"])


@pytest.mark.slow
@pytest.mark.mpi
def test_a_tiny_sweep_runs_resumes_and_makes_the_study(tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "mpimarl", "sweep", str(sweep)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent.name for p in (tmp_path / "runs").rglob("run.h5"))
    assert runs == ["rps-latest-seed0", "rps-latest-seed1", "rps-psro-seed0", "rps-psro-seed1", "sl-seed0",
                    "sl-seed1"]

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("finished before, skipped") == 6, again.stdout

    study = tmp_path / "study"
    made = subprocess.run([sys.executable, "-m", "mpimarl", "study", str(tmp_path / "runs"), "--out", str(study),
                           "--episodes", "4", "--target", "matrix_rps=0.9", "--judge", "random",
                           "--history", "0.5", "--judge-episodes", "6"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert made.returncode == 0, made.stderr[-3000:]
    per_run = pd.read_csv(study / "runs.csv")
    assert sorted(per_run.setup) == ["rps-latest", "rps-latest", "rps-psro", "rps-psro", "sl", "sl"]
    assert set(per_run[per_run.setup != "sl"].metric) == {"population exploitability"}
    rps = per_run[per_run.setup == "rps-latest"]
    # RPS starts near uniform (exploitability ~0); a trained latest snapshot is pure, so exploitable.
    assert (rps.final > 0.1).all() and (rps.target == 0.9).all()
    q1 = pd.read_csv(study / "q1_convergence.csv").set_index("setup")
    assert q1.loc["rps-psro", "seeds"] == 2 and q1.loc["rps-psro", "ranks"] == 2 and q1.loc["rps-psro", "members"] == 1
    q3 = pd.read_csv(study / "q3_matchmaking.csv").set_index("setup")
    assert {"rps-psro", "rps-latest"} <= set(q3.index) and "exploitability (final)" in q3
    assert q3.loc["rps-psro", "strategy"] == "psro" and q3.loc["rps-latest", "strategy"] == "latest"
    q2 = pd.read_csv(study / "q2_robustness.csv").set_index("setup")
    assert q2.loc[["rps-psro", "rps-latest"], "score vs random"].notna().all()
    # cooperative: each run's final policies with the final partners of the other run (never trained together)
    assert q2.loc["sl", "return with partners from other runs"] != "-"
    readme = (study / "README.md").read_text()
    for name in ("q1_time_to_target.png", "q1_matrix_rps_curves.png", "q3_matrix_rps_exploitability.png",
                 "judges_matrix_rps.png"):
        assert (study / name).stat().st_size > 1000 and f"`{name}`" in readme
    # held-out judges: every final policy against random and its halfway self, cached beside the run
    cached = pd.read_csv(tmp_path / "runs" / "rps-psro-seed0" / "judges.csv")
    assert set(cached.judge) == {"random", "own@0.5"} and (cached.episodes == 6).all()
    judged = pd.read_csv(study / "judges.csv").set_index("setup")
    assert {"rps-latest", "rps-psro"} <= set(judged.index) and "score vs own@0.5" in judged
    # rps-psro and rps-latest differ in the matchmaker alone: compared, self-play as the reference
    compared = pd.read_csv(study / "comparisons.csv")
    rows = compared[compared.metric == "exploitability (population)"]
    assert len(rows) == 1 and rows.iloc[0].setup == "rps-psro" and rows.iloc[0].reference == "rps-latest"
    assert rows.iloc[0].factor == "matchmaking.strategy" and rows.iloc[0].better == "lower"
    assert {"held-out score vs random", "held-out score vs own@0.5"} <= set(compared.metric)

    # judged again: nothing is played twice (the cache answers), the numbers are the same
    before = (tmp_path / "runs" / "rps-psro-seed0" / "judges.csv").stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "mpimarl", "study", str(tmp_path / "runs"), "--out", str(study),
                            "--episodes", "0", "--judge", "random", "--history", "0.5", "--judge-episodes", "6"],
                           capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "runs" / "rps-psro-seed0" / "judges.csv").stat().st_mtime_ns == before
    assert pd.read_csv(study / "judges.csv").set_index("setup").equals(judged)


def _fake_run(setup: str, seed: int, game: str, config: dict) -> SimpleNamespace:
    """What check_setups and comparisons read of a StudyRun (a real one needs a run file)."""
    return SimpleNamespace(setup=setup, seed=seed, game=game, path=Path(f"runs/{setup}-{game}-seed{seed}/run.h5"),
                           ranks=3, run=SimpleNamespace(config={"name": setup, "seed": seed, **config}))


def test_a_setup_label_over_two_games_or_one_seed_is_named_and_the_rest_compared() -> None:
    runs = [_fake_run("a", s, "kuhn_poker", {"matchmaking": {"strategy": "latest"}}) for s in (0, 1, 2)]
    runs += [_fake_run("a", 3, "matrix_rps", {"matchmaking": {"strategy": "latest"}})]
    runs += [_fake_run("b", s, "kuhn_poker", {"matchmaking": {"strategy": "psro"}}) for s in (0, 1, 2)]
    runs += [_fake_run("c", 0, "kuhn_poker", {"matchmaking": {"strategy": "psro"}, "ppo": {"epochs": 2}})]
    kept, notes = check_setups(runs)
    assert len(kept) == 7 and all(r.game == "kuhn_poker" for r in kept)
    assert any("'a' holds runs of different games" in n and "a-matrix_rps-seed3" in n for n in notes)
    assert any("'c' has one seed" in n for n in notes)
    outcomes = pd.DataFrame([{"setup": r.setup, "seed": r.seed, "game": r.game, "path": str(r.path),
                              "metric": "final population exploitability",
                              "value": {"a": 0.3, "b": 0.05, "c": 0.1}[r.setup] + 0.01 * r.seed} for r in kept])
    compared, not_compared = comparisons(kept, outcomes)
    row = compared[(compared.setup == "b") & (compared.reference == "a")].iloc[0]
    assert row.factor == "matchmaking.strategy" and row.difference == pytest.approx(-0.25)
    assert row.better == "lower" and row.resolved and row["p (permutation)"] == pytest.approx(0.1)
    # b and c differ in one setting too (ppo.epochs); a and c in two: named, not compared
    assert set(compared.reference + ">" + compared.setup) == {"a>b", "b>c"}
    assert any("a and c differ in 2 settings" in n for n in not_compared)
    # asked for, they are compared with both settings as the factor, and the study says so
    forced, notes = comparisons(kept, outcomes, pairs=[("c", "a")])
    row = forced[(forced.setup == "c") & (forced.reference == "a")].iloc[0]
    assert row.factor == "matchmaking.strategy + ppo.epochs" and row.value == "'psro' + 2"
    assert any("c and a differ in 2 settings" in n and "compared as asked" in n for n in notes)


def test_study_of_a_folder_without_runs_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mpimarl", "study", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 2 and "no readable run.h5" in out.stderr
