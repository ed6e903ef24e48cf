"""IMPALA actor ranks under `mpiexec`: a learner fed by actors, in both schedules.

The actors stream segments to their learner; only the learner talks to rank 0, so the run file looks
like a one-rank-per-policy run plus the policy lag of every batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpimarl.analysis import load_run
from tests.conftest import CONFIGS, REPO, assert_same_runs, mpiexec, run_mpi

pytestmark = pytest.mark.mpi

SHORT = ["--steps", "3000", "schedule.steps_per_generation=1500", "evaluation.baseline_episodes=4",
         "evaluation.pool_episodes=2", "ppo.num_envs=4", "ppo.rollout_steps=512", "evaluation.num_envs=4"]


@pytest.mark.slow
def test_async_learners_with_an_actor_each_train_connect_four(tmp_path: Path) -> None:
    """mpiexec -n 5, async: two policies of a learner and an actor; the actors play the learners'
    line-ups (training tallies reach rank 0), the learners record the lag of every batch."""
    out = run_mpi(5, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "schedule.mode=async", "trainer.actors_per_learner=1"])
    assert out.returncode == 0, out.stderr
    assert "player-0 (learner 1, actors 2-2)" in out.stdout
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["policy_ranks"] == {"player-0": [1, 2], "player-1": [3, 4]}
    assert set(run.train["rank"]) == {1, 3}  # only learners speak to rank 0
    assert (run.train["actor_ranks"] == 1).all()
    lag = run.train[["policy_lag_mean", "policy_lag_max"]]
    assert lag.notna().all().all() and (lag >= 0).all().all()
    assert (run.train["policy_lag_max"] >= run.train["policy_lag_mean"]).all()
    assert run.train["vtrace_rho_mean"].notna().all()
    assert sorted(run.pool.groupby("policy_id")["version"].max().unique()) == [2]
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 3000).all()
    training = run.matches[run.matches["kind"] == "training"]
    assert len(training) > 0 and set(training["rank"]) == {1, 3}
    assert training["episodes"].sum() > 0


@pytest.mark.slow
def test_async_policy_lag_is_bounded_by_max_policy_lag(tmp_path: Path) -> None:
    """CartPole's actors outrun a learner that makes 20 epochs per update: without a bound the
    surplus segments queue up and the lag grows (a mean of 20 was measured). With
    trainer.max_policy_lag=1 no batch holds a segment older than 1 update; the stale ones are
    counted in segments_dropped and their steps still count toward the budget."""
    out = run_mpi(4, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), "--steps", "6000",
                      "schedule.steps_per_generation=3000", "schedule.mode=async", "trainer.actors_per_learner=2",
                      "trainer.max_policy_lag=1", "evaluation.baseline_episodes=4"])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert (run.train["policy_lag_max"] <= 1).all(), run.train["policy_lag_max"].tolist()
    dropped = run.train["segments_dropped"]
    assert dropped.notna().all() and dropped.sum() > 0  # without the bound the lag grew: segments were stale
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 6000).all()


@pytest.mark.slow
def test_sync_runs_with_actors_are_deterministic_and_have_no_lag(tmp_path: Path) -> None:
    """Same seed twice, a learner with two actors (mpiexec -n 4, sync): identical snapshots and train
    rows; every batch was played with the learner's current weights (lag 0)."""
    runs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        out = run_mpi(4, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(d), "--seed", "5", *SHORT,
                          "schedule.mode=sync", "trainer.actors_per_learner=2"])
        assert out.returncode == 0, out.stderr
        runs.append(load_run(d / "run.h5"))
    a, b = runs
    assert len(a.pool) == len(b.pool) == 3
    assert_same_runs(a, b)
    assert (a.train["segments_dropped"] == 0).all()  # sync: never stale
    assert (a.train["policy_lag_max"] == 0).all() and (a.train["actor_ranks"] == 2).all()
    assert a.pool["env_steps"].max() >= 3000


@pytest.mark.parametrize(("n", "overrides", "named"), [
    (4, ["trainer.actors_per_learner=1"], "the last 1 rank(s) (3..3)"),
    (5, ["trainer.actors_per_learner=1", "trainer.ranks_per_policy=2"], "use either learner groups or actors"),
    (3, ["trainer.actors_per_learner={agnt: 1}"], "unknown roles ['agnt']"),
    (3, ["trainer.actors_per_learner=1", "trainer.vtrace_c_bar=2"], "vtrace_c_bar 2.0 > trainer.vtrace_rho_bar"),
])
def test_actor_counts_that_do_not_fit_are_refused(n: int, overrides: list[str], named: str, tmp_path: Path) -> None:
    """An actor count that leaves ranks over, is combined with learner groups, names no role, or bad
    V-trace levels: one message, exit 2 on every rank, no run file."""
    out = run_mpi(n, ["train", str(CONFIGS / "cartpole.yaml"), "--run-dir", str(tmp_path), *overrides])
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("mpimarl: error:") == 1
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize("kind", ["raise", "exit"])
def test_a_failing_actor_ends_the_job_promptly(kind: str, tmp_path: Path) -> None:
    """The actor (rank 2) fails after its first segment: the whole job ends within seconds; when it
    raises, rank 0 records which rank failed."""
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", "train", str(CONFIGS / "cartpole.yaml"),
           "--run-dir", str(tmp_path), *SHORT, "schedule.mode=sync", "trainer.actors_per_learner=1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MPIMARL_FAULT=f"2:training:{kind}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the job hung after the actor's fault:\n{exc.stderr}")
    ended = time.time()
    assert out.returncode != 0, out.stderr
    injected = float(out.stderr.split(f"injecting fault '{kind}' in phase training at ")[1].split()[0])
    assert ended - injected < 15.0
    run = load_run(tmp_path / "run.h5")
    assert run.attrs["finished"] is False
    if kind == "raise":
        assert "actor rank 2 (agent-0) failed" in run.attrs.get("failure", ""), run.attrs


@pytest.mark.slow
@pytest.mark.parametrize(("n", "config", "overrides"), [
    # (A local critic with actors runs in the tests above; value normalisation is on in both of these.)
    (5, "speaker_listener_mappo", []),  # MAPPO: critic on the global state, value normalisation, two roles
    (3, "simple_spread_mappo", []),  # MAPPO: agent-specific state, value normalisation, a team of three
], ids=["state_critic", "agent_state_critic"])
def test_actors_feed_learners_with_value_norm_and_centralised_critics(n: int, config: str, overrides: list[str],
                                                                      tmp_path: Path) -> None:
    """Sync, one actor per learner: the segments carry the centralised critic's input, the weight
    broadcasts the value normaliser's statistics; every policy learns from its actor (lag 0) and the
    critic trains on normalised targets (its loss stays on the scale of unit-variance targets)."""
    out = run_mpi(n, ["train", str(CONFIGS / f"{config}.yaml"), "--run-dir", str(tmp_path), *SHORT,
                      "schedule.mode=sync", "trainer.actors_per_learner=1", *overrides])
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.config["ppo"]["value_norm"] is True
    train = run.train
    assert (train["actor_ranks"] == 1).all() and (train["policy_lag_max"] == 0).all()
    # The actors played the learner's policy (as in test_obs_norm_mpi: 0.9993-1.0 when they do, 0.90-0.99 when
    # the actor's normalisation lagged).
    assert train["vtrace_rho_mean"].between(0.995, 1.0).all(), train["vtrace_rho_mean"].tolist()
    assert train["value_loss"].notna().all() and (train["value_loss"] < 5.0).all()
    assert sorted(run.pool.groupby("policy_id")["version"].max().unique()) == [2]
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 3000).all()
