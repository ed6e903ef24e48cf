"""RunRecorder.reopen on real HDF5 files: a resumed run's tables continue from the checkpoint's row
counts (no gap, no duplicate), newer snapshots are dropped, a foreign file is refused."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.errors import RunFileError
from mpimarl.record.recorder import RunRecorder


def _pool_row(version: int) -> dict[str, object]:
    return {"time": float(version), "generation": version, "policy_id": "player-0", "role": "player",
            "version": version, "parent_id": "player-0" if version else "", "parent_version": version - 1,
            "rank": 1, "env_steps": 100 * version}


def _publish(rec: RunRecorder, version: int) -> None:
    rec.save_weights("player-0", version, "player", np.full(3, version, np.float32),
                     parent=("player-0", version - 1) if version else None, layout="[]")
    rec.append("pool", [_pool_row(version)])


def test_reopen_cuts_tables_back_to_the_checkpoint_and_continues_without_gap_or_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": {"seed": 1}, "finished": False}) as rec:
        for v in range(3):
            _publish(rec, v)
        checkpoint_counts = {"pool": rec.row_count("pool")}  # the checkpoint after version 2
        for v in (3, 4):  # published after the checkpoint, then the job died
            _publish(rec, v)
        rec.set_attr("failure", "Interrupted: received signal SIGTERM")

    rec = RunRecorder.reopen(path, checkpoint_counts, max_version=2)
    assert rec.row_count("pool") == 3 and rec.row_count("train") == 0
    with pytest.raises(KeyError, match="player-0@3"):
        rec.read_weights("player-0", 3)
    np.testing.assert_array_equal(rec.read_weights("player-0", 2), np.full(3, 2, np.float32))
    assert rec.get_attr("config") == {"seed": 1} and rec.get_attr("failure").startswith("Interrupted")
    rec.del_attr("failure")
    for v in (3, 4, 5):  # the resumed run publishes 3 and 4 again, then goes on
        _publish(rec, v)
    rec.close()

    run = load_run(path)
    assert run.pool["version"].tolist() == [0, 1, 2, 3, 4, 5]
    assert "failure" not in run.attrs
    for v in range(6):
        assert run.weights("player-0", v)[0] == v


def test_reopen_refuses_a_checkpoint_newer_than_the_file_and_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunRecorder(path, {}) as rec:
        _publish(rec, 0)
    with pytest.raises(RunFileError, match="table 'pool' has 1 committed rows but the checkpoint was taken after 5"):
        RunRecorder.reopen(path, {"pool": 5}, max_version=0)
    RunRecorder.reopen(path, {"pool": 1}, max_version=0).close()  # the failed reopen left the file usable
    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["format"] = "not-a-run"
    with pytest.raises(RunFileError, match="not an mpimarl run file"):
        RunRecorder.reopen(foreign, {}, max_version=0)
    with pytest.raises(RunFileError, match="cannot reopen"):
        RunRecorder.reopen(tmp_path / "missing.h5", {}, max_version=0)
