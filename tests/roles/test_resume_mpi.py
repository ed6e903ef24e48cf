"""Resuming runs under `mpiexec -n 3`, started the way users start them.

A short sync connect four run is made once without interruption. The same run is then stopped
(after generation 2 with `--stop-after-generation`: rank 0 raises the same `Interrupted` a SIGTERM
raises, so the job ends with exit 143 and `failure` recorded, after rows past the checkpoint were
written; by a real SIGTERM; by its time limit) and continued with `--resume`. The resumed run must
end with the very same weights and the same rows in every table (wall-clock columns aside):
nothing lost, nothing recorded twice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.checkpoint import checkpoint_path, newest_complete, read_checkpoint
from tests.conftest import CONFIGS, REPO, assert_same_runs, mpiexec, run_mpi

pytestmark = pytest.mark.mpi

CONFIG = str(CONFIGS / "connect_four_league.yaml")
# 4 generations of 500 steps; one PPO update about every 500 steps, so updates fall inside
# generations and the rollout buffer is carried across checkpoints.
ARGS = ["--seed", "3", "--steps", "2000", "schedule.steps_per_generation=500", "ppo.num_envs=4",
        "ppo.rollout_steps=256", "evaluation.baseline_episodes=6", "evaluation.pool_episodes=4",
        "evaluation.num_envs=4", "evaluation.par_episodes=20"]


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_mpi(3, ["train", CONFIG, "--run-dir", str(run_dir), *ARGS, *extra], timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    out = _train(folder)
    assert out.returncode == 0, out.stderr
    return folder / "run.h5"


def _assert_same_run(expected: Path, actual: Path, versions: int = 4) -> None:
    a, b = load_run(expected), load_run(actual)
    assert_same_runs(a, b)
    assert b.attrs["finished"] is True and "failure" not in b.attrs
    assert sorted(b.pool.groupby("policy_id")["version"].max().unique()) == [versions]


def _interrupt(folder: Path) -> None:
    out = _train(folder, "--stop-after-generation", "2")
    assert out.returncode == 143, out.stderr
    assert "stopped after generation 2" in out.stderr
    run = load_run(folder / "run.h5")
    assert "--stop-after-generation" in run.attrs["failure"] and run.attrs["finished"] is False
    # Rows past the checkpoint were recorded (version 3 was published): the resume must drop them.
    assert run.pool["version"].max() == 3


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights_and_rows_as_an_uninterrupted_one(reference: Path,
                                                                                   tmp_path: Path) -> None:
    """Stopped after generation 2, then resumed; the newest checkpoint is damaged on the way, so the
    resume must also fall back to the previous whole one (generation 1) and still end the same."""
    _interrupt(tmp_path)
    folder = tmp_path / "checkpoints"
    assert newest_complete(folder, 3) == 2
    newest = checkpoint_path(folder, 2, 1)
    newest.write_bytes(newest.read_bytes()[:1000])  # rank 1's checkpoint of generation 2 cut short
    assert newest_complete(folder, 3) == 1
    out = _train(tmp_path, "--resume", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "resumed from the checkpoint of generation 1" in out.stdout
    _assert_same_run(reference, tmp_path / "run.h5")
    resumes = load_run(tmp_path / "run.h5").attrs["resumes"]
    assert [r["generation"] for r in resumes] == [1] and "stop-after-generation" in resumes[0]["previous_failure"]


def _one_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    errors = re.findall(r"mpimarl: error: .*", out.stderr)
    assert len(errors) == 1, out.stderr
    return errors[0]


def test_resume_without_a_run_file_is_a_start_up_error(tmp_path: Path) -> None:
    message = _one_error(_train(tmp_path, "--resume"))
    assert f"there is no run file {tmp_path / 'run.h5'}" in message
    assert not (tmp_path / "run.h5").exists()
    message = _one_error(run_mpi(3, ["train", CONFIG, "--resume", *ARGS], timeout=120))
    assert "--resume needs the run's folder" in message


@pytest.mark.slow
def test_resume_of_a_foreign_file_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "run.h5").write_text("not a run\n")
    message = _one_error(_train(tmp_path, "--resume"))
    assert "cannot be opened" in message and str(tmp_path / "run.h5") in message


@pytest.mark.slow
def test_resume_with_a_different_config_or_of_a_finished_run_is_a_start_up_error(reference: Path) -> None:
    before = reference.read_bytes()
    message = _one_error(_train(reference.parent, "--resume", "ppo.learning_rate=0.123"))
    assert "config differs" in message and "ppo.learning_rate: 0.0005 -> 0.123" in message
    message = _one_error(_train(reference.parent, "--resume"))
    assert "already finished all 4 generations" in message
    assert reference.read_bytes() == before  # refused before anything was written


def _signal_once_saved(args: list[str], run_dir: Path, marker: Path, sig: signal.Signals,
                       wait_s: float, ranks: int = 3, config: str = CONFIG) -> tuple[int, str]:
    """Start the run under mpiexec, send `sig` to mpiexec as soon as `marker` (a checkpoint file)
    exists, and return the job's exit code and stderr."""
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpimarl", "train", config, "--run-dir", str(run_dir),
           *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + wait_s
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
def test_a_run_ended_by_sigterm_resumes_to_the_same_result(reference: Path, tmp_path: Path) -> None:
    """SIGTERM to mpiexec (a SLURM time limit) at whatever moment it lands, then --resume."""
    # Rank 0 writes its generation-1 checkpoint once generation 0's is whole on every rank.
    returncode, err = _signal_once_saved(ARGS, tmp_path, checkpoint_path(tmp_path / "checkpoints", 1, 0),
                                         signal.SIGTERM, wait_s=240)
    assert returncode == 143, err
    assert "SIGTERM" in load_run(tmp_path / "run.h5").attrs["failure"]
    out = _train(tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert re.search(r"resumed from the checkpoint of generation [1-4]", out.stdout), out.stdout
    _assert_same_run(reference, tmp_path / "run.h5")


@pytest.mark.slow
def test_a_run_stopped_by_its_time_limit_resumes_to_the_same_result(reference: Path, tmp_path: Path) -> None:
    """schedule.time_limit_s (a job's share of a SLURM allocation) stops the run early at a boundary that
    every rank saves; the next job, without the limit, finishes it as if it had never stopped."""
    out = _train(tmp_path, "schedule.time_limit_s=0.5")
    assert out.returncode == 0, out.stderr
    stopped = load_run(tmp_path / "run.h5")
    assert stopped.attrs["finished"] is True and stopped.pool["version"].max() < 4
    out = _train(tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert "resumed from the checkpoint of generation" in out.stdout
    _assert_same_run(reference, tmp_path / "run.h5")


# ---- layouts with more than one rank per policy, and evaluation played by the trainers -------------

CARTPOLE = str(CONFIGS / "cartpole.yaml")
SHORT = ["--seed", "4", "--steps", "900", "schedule.mode=sync", "schedule.steps_per_generation=300",
         "ppo.num_envs=4", "ppo.rollout_steps=128", "ppo.epochs=2", "evaluation.baseline_episodes=4",
         "evaluation.pool_episodes=2", "evaluation.num_envs=2"]
LAYOUTS = {
    # one policy trained by a data-parallel group of ranks 1-2
    "learner group": (CARTPOLE, [*SHORT, "trainer.ranks_per_policy=2"]),
    # one policy: learner rank 1 fed by IMPALA actor rank 2
    "learner and actor": (CARTPOLE, [*SHORT, "trainer.actors_per_learner=1"]),
    # two connect four trainers that also play the evaluation episodes rank 0 plans
    "evaluation workers": (CONFIG, [*ARGS[:3], "2100", "schedule.steps_per_generation=700", *ARGS[5:],
                                    "evaluation.workers=trainers"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_multi_rank_layouts_resume_to_the_same_result(layout: str, tmp_path: Path) -> None:
    """Each rank saves its own envs, rollout, optimiser and random streams (a group member, an actor,
    an evaluation worker alike); stopped after generation 1 and resumed, the run ends exactly as an
    uninterrupted one."""
    config, args = LAYOUTS[layout]

    def train(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_mpi(3, ["train", config, "--run-dir", str(folder), *args, *extra], timeout=300)

    out = train(tmp_path / "reference")
    assert out.returncode == 0, out.stderr
    stopped = tmp_path / "stopped"
    out = train(stopped, "--stop-after-generation", "1")
    assert out.returncode == 143, out.stderr
    assert load_run(stopped / "run.h5").pool["version"].max() == 2  # rows past the checkpoint: dropped on resume
    assert newest_complete(stopped / "checkpoints", 3) == 1
    out = train(stopped, "--resume")
    assert out.returncode == 0, out.stderr
    assert "resumed from the checkpoint of generation 1" in out.stdout
    _assert_same_run(tmp_path / "reference" / "run.h5", stopped / "run.h5", versions=3)
    if layout == "evaluation workers":  # the job counts continue across the resume
        jobs = [load_run(d / "run.h5").attrs["evaluation_jobs"] for d in (tmp_path / "reference", stopped)]
        assert [j["remote"] + j["local"] for j in jobs][0] == [j["remote"] + j["local"] for j in jobs][1] > 0


# ---- the async schedule: no exact repeat, but a consistent cut and tables without gap or duplicate --

ASYNC = ["--seed", "3", "--steps", "2000", "schedule.mode=async", "schedule.steps_per_generation=500",
         *ARGS[5:]]
ASYNC_GENERATIONS = 4


def _train_async(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_mpi(3, ["train", CONFIG, "--run-dir", str(run_dir), *ASYNC, *extra], timeout=300)


def _assert_continues_without_gap_or_duplicate(path: Path) -> None:
    """A finished async run that was stopped and resumed: every snapshot once, every generation's
    training report once, and each policy's train rows (one per update) in step order, one update
    apart (a row kept from after the checkpoint and recorded again would step back, a lost one
    leave a double step)."""
    run = load_run(path)
    assert run.attrs["finished"] is True and "failure" not in run.attrs
    assert len(run.attrs["resumes"]) == 1
    for policy, pool in run.pool.groupby("policy_id"):
        assert sorted(pool["version"]) == list(range(ASYNC_GENERATIONS + 1)), policy
        run.weights(policy, ASYNC_GENERATIONS)  # the last snapshot's weights are stored whole
    for policy, train in run.train.groupby("policy_id"):
        steps = train["env_steps"].to_numpy()
        step = np.diff(steps)
        assert (step > 0).all() and (step < 1.5 * np.median(step)).all(), (policy, steps)
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 500 * ASYNC_GENERATIONS).all()
    training = run.matches[run.matches["kind"] == "training"]
    per_generation = training.groupby(["policy_id", "version"]).size()
    assert len(per_generation) == 2 * ASYNC_GENERATIONS and (per_generation == 8).all(), per_generation  # 8 line-ups
    evaluated = run.matches[(run.matches["kind"] == "evaluation") & run.matches["policy_id"].str.startswith("player")]
    vs_baselines = evaluated[evaluated["opponent_id"].isin(["random", "tactical"])]
    per_snapshot = vs_baselines.groupby(["policy_id", "version", "opponent_id"]).size()
    assert len(per_snapshot) == 2 * ASYNC_GENERATIONS * 2 and (per_snapshot == 1).all(), per_snapshot


@pytest.mark.slow
@pytest.mark.timeout(600)  # two jobs of about 30 s each; generous for a loaded machine
def test_an_async_run_stopped_by_its_time_limit_resumes_from_its_last_cut(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 keeps an async run's time limit: every trainer saves a last checkpoint and stops; the
    next job continues from there to the end. Rank 1 sleeps 2 s after each PPO update in the first
    job (one update a generation, 4 generations), so the 3 s limit cuts it however fast the machine;
    rank 2 may finish first, and then resumes as a finished trainer."""
    monkeypatch.setenv("MPIMARL_FAULT", "1:training:slow:2")
    out = _train_async(tmp_path, "schedule.time_limit_s=3")
    monkeypatch.delenv("MPIMARL_FAULT")
    assert out.returncode == 0, out.stderr
    stopped = load_run(tmp_path / "run.h5")
    last = stopped.pool.groupby("policy_id")["version"].max()
    assert last["player-0"] < ASYNC_GENERATIONS, last
    cut = newest_complete(tmp_path / "checkpoints", 3)
    assert cut is not None
    out = _train_async(tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert f"resumed from async checkpoint {cut}" in out.stdout
    _assert_continues_without_gap_or_duplicate(tmp_path / "run.h5")
    # The time-limited job's snapshots were all kept: it stopped right at its cut.
    resumed = load_run(tmp_path / "run.h5")
    for policy, version in last.items():
        np.testing.assert_array_equal(stopped.weights(policy, version), resumed.weights(policy, version))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_async_run_interrupted_by_usr1_resumes_without_gap_or_duplicate(tmp_path: Path) -> None:
    """SIGUSR1 to mpiexec (a SLURM warning before the time limit) at whatever moment it lands, after
    the second cut; --resume continues from the newest cut every rank saved whole."""
    returncode, err = _signal_once_saved(ASYNC, tmp_path, checkpoint_path(tmp_path / "checkpoints", 2, 0),
                                         signal.SIGUSR1, wait_s=400)  # rank 0 saves a cut last
    assert returncode == 138, err
    assert "SIGUSR1" in load_run(tmp_path / "run.h5").attrs["failure"]
    cut = newest_complete(tmp_path / "checkpoints", 3)
    assert cut is not None and cut >= 2
    out = _train_async(tmp_path, "--resume")
    assert out.returncode == 0, out.stderr
    assert f"resumed from async checkpoint {cut}" in out.stdout
    _assert_continues_without_gap_or_duplicate(tmp_path / "run.h5")


@pytest.mark.slow
def test_resume_without_checkpoints_is_a_start_up_error(tmp_path: Path) -> None:
    """checkpoint.every 0 writes no checkpoints: --resume names why, exit 2."""
    message = _one_error(_train(tmp_path, "--resume", "checkpoint.every=0"))
    assert "--resume needs checkpoints" in message and "every 0" in message


# ---- async, several ranks per policy: learner groups and IMPALA actors ------------------------------
#
# Two cartpole policies on 5 ranks: each a learner group of 2 ranks, or a learner and its actor. A cut
# reaches every rank of a policy (the group's leader or the learner relays rank 0's request); the
# resumed run must continue as the one-rank async runs above do.

MULTI_GENERATIONS = 4
MULTI_ASYNC = ["--seed", "5", "--steps", str(300 * MULTI_GENERATIONS), "schedule.mode=async",
               "schedule.steps_per_generation=300", "ppo.num_envs=4", "ppo.rollout_steps=128", "ppo.epochs=2",
               "evaluation.baseline_episodes=2", "evaluation.num_envs=2"]
MULTI_LAYOUTS = {"learner group": "trainer.ranks_per_policy=2", "learner and actor": "trainer.actors_per_learner=1"}


def _train_multi(run_dir: Path, layout: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_mpi(5, ["train", CARTPOLE, "--run-dir", str(run_dir), *MULTI_ASYNC, MULTI_LAYOUTS[layout], *extra],
                   timeout=300)


def _assert_multi_continues(path: Path, regular_steps: bool = True) -> None:
    """Both policies: every snapshot once, one training report per generation, train rows in step
    order without a repeated or missing update, step counters that continued across the cut.
    `regular_steps`: each update takes the same steps (a learner group; an IMPALA learner trains on
    whatever its queue holds, one segment or more: see `_assert_cut_matches_rows`)."""
    run = load_run(path)
    assert run.attrs["finished"] is True and "failure" not in run.attrs
    assert len(run.attrs["resumes"]) == 1
    assert sorted(run.pool["policy_id"].unique()) == ["agent-0", "agent-1"]
    for policy, pool in run.pool.groupby("policy_id"):
        assert sorted(pool["version"]) == list(range(MULTI_GENERATIONS + 1)), policy
        run.weights(policy, MULTI_GENERATIONS)
    for policy, train in run.train.groupby("policy_id"):
        steps = train["env_steps"].to_numpy()
        step = np.diff(steps)
        assert (step > 0).all(), (policy, steps)
        if regular_steps:
            assert (step < 1.5 * np.median(step)).all(), (policy, steps)
    assert (run.pool.groupby("policy_id")["env_steps"].max() >= 300 * MULTI_GENERATIONS).all()
    training = run.matches[run.matches["kind"] == "training"]
    per_generation = training.groupby(["policy_id", "version"]).size()
    assert len(per_generation) == 2 * MULTI_GENERATIONS and (per_generation == 1).all(), per_generation


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_async_learner_group_stopped_by_its_time_limit_resumes_from_its_last_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0's time limit stops an async run of two learner groups after a last cut that every rank
    of each group saved (rank 1, a leader, sleeps 1 s after each update, so the 2 s limit cuts its
    group however fast the machine); --resume continues it to the end. A resume that changes the
    layout is refused before the run file is touched."""
    monkeypatch.setenv("MPIMARL_FAULT", "1:training:slow:1")
    out = _train_multi(tmp_path, "learner group", "schedule.time_limit_s=2")
    monkeypatch.delenv("MPIMARL_FAULT")
    assert out.returncode == 0, out.stderr
    stopped = load_run(tmp_path / "run.h5")
    last = stopped.pool.groupby("policy_id")["version"].max()
    assert last["agent-0"] < MULTI_GENERATIONS, last
    cut = newest_complete(tmp_path / "checkpoints", 5)
    assert cut is not None
    for rank in range(5):  # every rank of every group saved its own file of the cut
        assert checkpoint_path(tmp_path / "checkpoints", cut, rank).is_file(), rank
    out = _train_multi(tmp_path, "learner group", "--resume")
    assert out.returncode == 0, out.stderr
    assert f"resumed from async checkpoint {cut}" in out.stdout
    _assert_multi_continues(tmp_path / "run.h5")
    # The final cut (rank 0 writes "finished" files for every rank of a policy done with every
    # generation) is whole on all 5 ranks.
    final = newest_complete(tmp_path / "checkpoints", 5)
    assert final is not None and final > cut
    resumed = load_run(tmp_path / "run.h5")
    for policy, version in last.items():  # the time-limited job stopped right at its cut
        np.testing.assert_array_equal(stopped.weights(policy, version), resumed.weights(policy, version))

    before = (tmp_path / "run.h5").read_bytes()
    out = run_mpi(3, ["train", CARTPOLE, "--run-dir", str(tmp_path), *MULTI_ASYNC, "trainer.ranks_per_policy=1",
                      "--resume"], timeout=120)  # refused before the world size is compared
    message = _one_error(out)
    assert "trainer.ranks_per_policy: 2 -> 1" in message and "may not change on resume" in message, message
    assert (tmp_path / "run.h5").read_bytes() == before


def _assert_cut_matches_rows(folder: Path, cut: int, learners: dict[str, int]) -> None:
    """Before the resume: the train rows rank 0 counted at cut `cut` are exactly those each IMPALA
    learner had sent when it saved the cut: one row per update it had made, the last at the steps it
    saved. (A row lost or counted twice at the cut would break this; steps alone cannot show it, as
    a batch takes every segment queued, one or more.)"""
    checkpoints = folder / "checkpoints"
    counts = read_checkpoint(checkpoint_path(checkpoints, cut, 0), generation=cut, rank=0)["row_counts"]
    kept = load_run(folder / "run.h5").train.iloc[: int(counts["train"])]
    for policy, rank in learners.items():
        kind = read_checkpoint(checkpoint_path(checkpoints, cut, rank), generation=cut, rank=rank)["kind"]
        rows = kept[kept["policy_id"] == policy]
        assert len(rows) == int(kind["version"]), (policy, len(rows), kind["version"])
        if len(rows):
            assert int(rows["env_steps"].iloc[-1]) == int(kind["steps_learned"]), policy


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_async_run_with_actors_interrupted_by_usr1_resumes_without_gap_or_duplicate(tmp_path: Path) -> None:
    """SIGUSR1 to mpiexec at whatever moment it lands after the second cut of two learners with an
    actor each: at a cut the learner has every segment its actor sent before its final header (they
    are in the learner's saved queue or still in the actor's saved rollout), so the run resumes from
    the newest cut all 5 ranks saved whole and continues without gap or duplicate."""
    returncode, err = _signal_once_saved([*MULTI_ASYNC, MULTI_LAYOUTS["learner and actor"]], tmp_path,
                                         checkpoint_path(tmp_path / "checkpoints", 2, 0), signal.SIGUSR1,
                                         wait_s=300, ranks=5, config=CARTPOLE)
    assert returncode == 138, err
    assert "SIGUSR1" in load_run(tmp_path / "run.h5").attrs["failure"]
    cut = newest_complete(tmp_path / "checkpoints", 5)
    assert cut is not None and cut >= 2
    _assert_cut_matches_rows(tmp_path, cut, {"agent-0": 1, "agent-1": 3})
    out = _train_multi(tmp_path, "learner and actor", "--resume")
    assert out.returncode == 0, out.stderr
    assert f"resumed from async checkpoint {cut}" in out.stdout
    _assert_multi_continues(tmp_path / "run.h5", regular_steps=False)
