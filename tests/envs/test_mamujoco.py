"""Multi-agent MuJoCo (gymnasium-robotics' MaMuJoCo) through the shipped MAPPO config; skipped without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.cli import main
from tests.conftest import CONFIGS, run_mpi

pytest.importorskip("gymnasium_robotics", reason="MaMuJoCo needs: pip install mujoco gymnasium-robotics")
pytest.importorskip("mujoco", reason="MaMuJoCo needs: pip install mujoco gymnasium-robotics")

CONFIG = CONFIGS / "mamujoco_halfcheetah_mappo.yaml"


def test_the_config_checks_and_a_missing_scenario_is_one_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(CONFIG), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "role cheetah: agents agent_0, agent_1; obs 12, actions Box(-1.0, 1.0, (3,), float32), team" in out
    assert main(["check", str(CONFIG), "env.kwargs.scenario=HalfCheetahh", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mpimarl: error: ") and "HalfCheetahh" in err[-1]


@pytest.mark.mpi
@pytest.mark.slow
def test_mappo_trains_on_halfcheetah_2x3(tmp_path: Path) -> None:
    """Updates of MAPPO of about 2048 environment steps: the episodes that end are whole."""
    proc = run_mpi(2, ["train", str(CONFIG), "--run-dir", str(tmp_path / "r"), "--steps", "8192",
                       "schedule.steps_per_generation=4096"], timeout=400)
    assert proc.returncode == 0, proc.stderr
    run = load_run(tmp_path / "r" / "run.h5")
    # An update closes after 4096 complete samples (2052 steps: the open transitions carry over).
    assert len(run.train) >= 3 and run.train.env_steps.max() <= 8192
    ended = run.train.dropna(subset=["episode_return_mean"])
    assert len(ended) >= 1
    assert np.isfinite(ended.episode_return_mean).all() and (ended.episode_length_mean == 1000).all()
