"""The resume rules without MPI: which config changes a resume accepts, when a run is resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpimarl.config import config_to_dict, load_config
from mpimarl.errors import ConfigError
from mpimarl.roles.launch import _resume_folder
from mpimarl.roles.resume import check_unit_saved, config_differences
from tests.conftest import CONFIGS


def _config(*overrides: str) -> dict[str, object]:
    return config_to_dict(load_config(CONFIGS / "connect_four_league.yaml", list(overrides)))


def test_budgets_and_resources_may_change_on_resume_but_nothing_else() -> None:
    stored = _config()
    assert config_differences(stored, _config("schedule.total_steps=5", "schedule.time_limit_s=60",
                                              "trainer.torch_threads=2", "server.timeout_s=30",
                                              "checkpoint.every=4")) == []
    diffs = config_differences(stored, _config("ppo.learning_rate=0.1", "matchmaking.strategy=uniform", "seed=9"))
    assert diffs == ["matchmaking.strategy: 'pfsp' -> 'uniform'", "ppo.learning_rate: 0.0005 -> 0.1", "seed: 0 -> 9"]
    older = dict(stored)
    del older["checkpoint"]  # a run file written before checkpoints existed
    assert config_differences(older, _config()) == []


def test_the_ranks_of_a_policy_may_not_change_on_resume() -> None:
    """trainer.* may change, but not the layout keys: every rank's checkpoint belongs to its layout."""
    stored = _config("trainer.ranks_per_policy=2")
    assert config_differences(stored, _config("trainer.ranks_per_policy=1", "trainer.torch_threads=2")) == [
        "trainer.ranks_per_policy: 2 -> 1"]
    assert config_differences(_config(), _config("trainer.actors_per_learner=1")) == [
        "trainer.actors_per_learner: 0 -> 1"]


def test_a_unit_counts_a_cut_only_when_every_rank_saved_it_with_the_same_group_weights() -> None:
    """The leader of a learner group (or an IMPALA learner) checks its ranks' confirmations of a cut."""
    saved = [{"rank": 1, "saved": 3, "weights_crc": 7}, {"rank": 2, "saved": 3, "weights_crc": 7}]
    check_unit_saved(saved, 3, identical=True)
    actors = [{"rank": 1, "saved": 3, "weights_crc": 7}, {"rank": 2, "saved": 3, "weights_crc": 9}]
    check_unit_saved(actors, 3, identical=False)  # an actor holds older behaviour weights
    with pytest.raises(RuntimeError, match=r"ranks \[2\] of the policy did not save it"):
        check_unit_saved([saved[0], {"rank": 2, "saved": None, "weights_crc": 7}], 3, identical=True)
    with pytest.raises(RuntimeError, match="learner group saved different weights.*rank 2: 0x00000009"):
        check_unit_saved(actors, 3, identical=True)


def test_a_run_is_resumed_when_asked_or_when_slurm_requeued_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    run_dir = str(tmp_path)
    assert _resume_folder(False, run_dir) is None
    assert _resume_folder(True, run_dir) == run_dir
    assert _resume_folder(run_dir, None) == run_dir
    assert _resume_folder(run_dir, run_dir) == run_dir
    with pytest.raises(ConfigError, match="--resume needs the run's folder"):
        _resume_folder(True, None)
    with pytest.raises(ConfigError, match="name different folders"):
        _resume_folder(str(tmp_path / "other"), run_dir)
    # A SLURM requeue resumes by itself, but only a folder that holds a run file.
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert _resume_folder(False, run_dir) is None
    (tmp_path / "run.h5").write_bytes(b"")
    assert _resume_folder(False, run_dir) == run_dir
    assert _resume_folder(False, None) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert _resume_folder(False, run_dir) is None
