"""TensorBoard views of a run file: written live by the recorder's observer and by `mpimarl tensorboard`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.cli import main
from mpimarl.record.recorder import RunRecorder
from mpimarl.record.tensorboard import attach_live_view, effective_support
from tests.conftest import CONFIGS, REPO, mpiexec, run_mpi

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install -e '.[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

Events = dict[str, list[tuple[int, float, float]]]


def read_events(folder: Path) -> Events:
    """Every scalar of the event files in `folder`: tag -> [(step, value, wall time)], as TensorBoard reads them."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _row(**kw: object) -> dict[str, object]:
    return {"time": 1.0, "generation": 0, **kw}


def _record_small_run(path: Path) -> RunRecorder:
    """A run file with rows in every table the view reads, a live view attached before the rows."""
    rec = RunRecorder(path, {"config": {}, "name": "tb"})
    attach_live_view(rec, path.parent / "live", resumed=False)
    for i, steps in enumerate((512, 1024)):
        rec.append("train", [_row(time=1.0 + i, rank=1, policy_id="player-0", role="player", version=i + 1,
                                  env_steps=steps, episodes=10 * (i + 1), episode_return_mean=0.1 * i,
                                  policy_loss=-0.01, value_loss=0.5 - 0.1 * i, entropy=1.2, steps_per_s=900.0,
                                  wait_s=0.25)])
    published = (("player-0", 0), ("player-1", 0), ("player-0", 1))
    rec.append("pool", [_row(policy_id=p, role="player", version=v, parent_id="", parent_version=-1, rank=1,
                             env_steps=0, generation=v) for p, v in published])
    rec.append("matches", [
        _row(kind="evaluation", matchmaker="baseline", rank=0, policy_id="player-0", version=1, role="player",
             opponent_id="random", opponent_version=-1, opponent_role="player", episodes=8, wins=5, draws=2,
             losses=1, return_mean=0.5, opponent_return_mean=-0.5, length_mean=9.0),
        _row(kind="training", matchmaker="latest", rank=1, policy_id="player-0", version=1, role="player",
             opponent_id="player-1", opponent_version=0, opponent_role="player", episodes=8, wins=1, draws=0,
             losses=7, return_mean=-0.5, opponent_return_mean=0.5, length_mean=9.0),
    ])
    rec.append("ratings", [_row(policy_id="player-0", version=1, role="player", elo=1030.0, mu=26.0, sigma=7.5,
                                games=8, score=0.5)])
    rec.append("meta", [_row(time=2.0, generation=1, role="player", policy_id=p, version=v, matchmaker="psro",
                             weight=w, nash_weight=w, nash_rating=0.0)
                        for p, v, w in (("player-0", 0, 0.5), ("player-1", 0, 0.25), ("player-0", 1, 0.25))])
    rec.append("exploitability", [_row(policy_id="population", version=-1, role="player", exploitability=0.3,
                                       nash_conv=0.6)])
    return rec


def test_live_view_and_conversion_write_the_run_files_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.h5"
    _record_small_run(path).close()
    live = read_events(tmp_path / "live")
    assert main(["tensorboard", str(path), "--out", str(tmp_path / "conv")]) == 0
    assert "wrote 22 points" in capsys.readouterr().out
    assert read_events(tmp_path / "conv") == live

    run = load_run(path)
    start = live["policy/player-0/value_loss"][0][2] - 1.0  # wall time = run start + the row's time
    # TensorBoard stores float32 values
    assert [(s, v) for s, v, _ in live["policy/player-0/value_loss"]] == [
        (s, pytest.approx(v)) for s, v in zip(run.train.env_steps, run.train.value_loss)]
    assert [round(t - start, 3) for *_, t in live["policy/player-0/return"]] == [1.0, 2.0]
    assert "policy/player-0/approx_kl" not in live  # never measured (NaN): no curve
    assert live["rating/player/player-0/sigma"] == [(1, 7.5, pytest.approx(start + 1.0))]
    assert live["vs_baseline/player/player-0/random/score"][0][:2] == (1, 0.75)  # (5 + 2/2) / 8
    assert not any(tag.startswith("vs_baseline/player/player-0/player-1") for tag in live)  # training match
    assert [(s, v) for s, v, _ in live["population/player/pool_size"]] == [(0, 1), (0, 2), (1, 3)]
    (step, support, _), = live["population/player/effective_support"]
    assert step == 1 and support == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))
    assert live["exploitability/player/population"][0][:2] == (0, pytest.approx(0.3))


def test_effective_support_counts_equal_weights() -> None:
    assert effective_support(np.array([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_support(np.array([0.25] * 4)) == pytest.approx(4.0)
    assert math.isnan(effective_support(np.array([0.0, np.nan])))


def test_a_file_that_is_not_a_run_file_is_one_error_and_writes_nothing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.h5"
    bogus.write_bytes(b"not hdf5 at all")
    out = tmp_path / "tb"
    assert main(["tensorboard", str(bogus), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mpimarl: error: ") and "notes.h5" in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "tb.partial").exists()
    assert main(["tensorboard", str(tmp_path / "missing.h5")]) == 2


def test_without_the_extra_a_tensorboard_run_stops_before_any_file(tmp_path: Path) -> None:
    """`logging.tensorboard: true` where tensorboard cannot be imported: exit 2, one line, no run folder."""
    blocker = tmp_path / "site"
    (blocker / "tensorboard").mkdir(parents=True)
    (blocker / "tensorboard" / "__init__.py").write_text("raise ImportError('No module named tensorboard')\n")
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    run_dir = tmp_path / "run"
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "mpimarl", "train", str(CONFIGS / "rps_league.yaml"),
           "--run-dir", str(run_dir), "logging.tensorboard=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mpimarl: error")]
    assert len(errors) == 1 and "logging.tensorboard" in errors[0] and "[tensorboard]" in errors[0], proc.stderr
    assert not run_dir.exists()


@pytest.mark.mpi
@pytest.mark.slow
def test_a_trained_run_shows_the_same_curves_live_and_converted(tmp_path: Path) -> None:
    """Kuhn poker PSRO, 3 generations: the live events equal the conversion's and the run file's rows."""
    run_dir = tmp_path / "kuhn"
    proc = run_mpi(3, ["train", str(CONFIGS / "kuhn_psro.yaml"), "--run-dir", str(run_dir), "--steps", "6000",
                       "schedule.steps_per_generation=2000", "ppo.rollout_steps=512", "ppo.num_envs=16",
                       "evaluation.baseline_episodes=8", "logging.tensorboard=true", "ppo.epochs=2"],
                   timeout=400)
    assert proc.returncode == 0, proc.stderr
    live = read_events(run_dir / "tensorboard")
    assert main(["tensorboard", str(run_dir / "run.h5")]) == 0  # default: tensorboard/ beside the run file
    assert read_events(run_dir / "tensorboard") == live
    run = load_run(run_dir / "run.h5")
    for policy_id, rows in run.train.groupby("policy_id"):
        assert [(s, v) for s, v, _ in live[f"policy/{policy_id}/return"]] == [
            (int(s), pytest.approx(v)) for s, v in zip(rows.env_steps, rows.episode_return_mean)]
        assert len(live[f"policy/{policy_id}/wait_s"]) == len(rows)
    for (role, policy_id), rows in run.ratings.groupby(["role", "policy_id"]):
        assert [v for _, v, _ in live[f"rating/{role}/{policy_id}/mu"]] == pytest.approx(list(rows.mu))
    population = run.exploitability[run.exploitability.policy_id == "population"]
    assert [(s, v) for s, v, _ in live["exploitability/player/population"]] == [
        (int(g), pytest.approx(v)) for g, v in zip(population.generation, population.exploitability)]
    assert [v for _, v, _ in live["population/player/pool_size"]] == list(range(1, len(run.pool) + 1))
    assert len(live["population/player/effective_support"]) == run.meta.groupby(["time", "generation"]).ngroups


def test_a_resumed_run_rewrites_its_view_without_the_cut_rows(tmp_path: Path) -> None:
    """Resuming cuts the tables back to the checkpoint; the live view then shows no point twice."""
    path = tmp_path / "run.h5"
    _record_small_run(path).close()
    rec = RunRecorder.reopen(path, {"train": 1, "pool": 2}, max_version=0)  # the checkpoint saw fewer rows
    attach_live_view(rec, tmp_path / "live", resumed=True)
    rec.append("train", [_row(time=5.0, rank=1, policy_id="player-0", role="player", version=2, env_steps=1024,
                              episodes=20, episode_return_mean=0.3)])
    rec.close()
    live = read_events(tmp_path / "live")
    assert [(s, v) for s, v, _ in live["policy/player-0/return"]] == [(512, 0.0), (1024, pytest.approx(0.3))]
    assert [v for _, v, _ in live["population/player/pool_size"]] == [1, 2]
    assert "rating/player/player-0/mu" not in live  # the ratings rows were after the checkpoint
    assert main(["tensorboard", str(path), "--out", str(tmp_path / "conv")]) == 0
    assert read_events(tmp_path / "conv") == live
