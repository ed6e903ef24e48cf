"""The run file survives `kill -9` of its writer at any moment, and loading never trusts a file.

A writer process (a real RunRecorder, forked from the test so each start costs nothing) appends the
way rank 0 does: a snapshot's weights, then its pool row, then train rows. It is killed with
SIGKILL at a random moment, many times; every time `load_run` reads the file and its tables agree.
Damaged and foreign files get a RunFileError that says what is wrong.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpimarl.analysis import Run, load_run
from mpimarl.errors import RunFileError
from mpimarl.record.recorder import RunRecorder

KILLS = 60


def _write_forever(path: Path, ready_fd: int) -> None:
    """The writer's loop (runs in the forked child until it is killed)."""
    rec = RunRecorder(path, {"config": {"seed": 1}})
    os.write(ready_fd, b"x")
    row = 0
    for version in range(10**9):
        rec.save_weights("p", version, "player", np.full(100 + version, version, np.float32), parent=None,
                         layout="flat")
        rec.append("pool", [{"time": float(version), "generation": version, "policy_id": "p", "role": "player",
                             "version": version, "parent_id": "", "parent_version": -1, "rank": 1,
                             "env_steps": 1000 * version}])
        size = 1 + version % 5
        rec.append("train", [{"time": float(r), "generation": r, "rank": 1, "policy_id": "p", "role": "player",
                              "version": version, "env_steps": 128 * r, "episodes": r}
                             for r in range(row, row + size)])
        row += size
        if version % 3 == 0:
            rec.set_attr("progress", {"version": version, "rows": row})


def _fork_writer(path: Path) -> tuple[int, int]:
    """Start a writer process; returns (pid, read end of its readiness pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            os.close(read_fd)
            _write_forever(path, write_fd)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _assert_tables_agree(run: Run) -> None:
    """Whole rows only, and the tables tell one story: every pool row has its weights, every train
    row belongs to a published version, nothing is missing or repeated."""
    pool, train = run.pool, run.train
    assert pool["version"].tolist() == list(range(len(pool)))
    assert train["generation"].tolist() == list(range(len(train)))
    np.testing.assert_array_equal(train["env_steps"], 128 * np.arange(len(train)))
    if len(train):
        assert train["version"].is_monotonic_increasing and train["version"].max() < len(pool)
    stored = run.policies()
    assert set(pool["version"]) <= set(stored["version"])  # weights are saved before the pool row
    assert len(stored) <= len(pool) + 1
    for version in stored["version"]:
        np.testing.assert_array_equal(run.weights("p", int(version)), np.full(100 + version, version, np.float32))


@pytest.mark.slow
def test_random_kill_9s_of_the_writer_leave_a_readable_consistent_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kill lands anywhere, also inside HDF5's flush or the journal's commit (before flushing
    through the journal, about 1 kill in 60 left the file unreadable: 'bad heap free list')."""
    # A killed process loses nothing the kernel already has, fsync or not; the fsyncs (which only a
    # lost node needs) would make each commit slow enough here that few kills land mid-run.
    monkeypatch.setenv("MPIMARL_RUN_FILE_FSYNC", "0")
    rng = random.Random(6)
    rows_seen = []
    for i in range(KILLS):
        path = tmp_path / f"run{i}.h5"
        pid, ready = _fork_writer(path)
        try:
            assert select.select([ready], [], [], 30)[0], "the writer did not start"
            time.sleep(rng.uniform(0.0, 0.5))
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            os.close(ready)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the writer ended on its own"
        run = load_run(path)
        _assert_tables_agree(run)
        rows_seen.append(len(run.train))
    assert max(rows_seen) > 5, "the kills should land mid-run, not only at the start"


def test_a_kill_9_while_the_file_is_being_created_gives_a_clear_error_or_a_whole_file(tmp_path: Path) -> None:
    rng = random.Random(7)
    outcomes: list[str] = []
    for i in range(15):
        path = tmp_path / f"run{i}.h5"
        pid, ready = _fork_writer(path)
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
        try:
            _assert_tables_agree(load_run(path))
            outcomes.append("readable")
        except RunFileError as exc:
            assert str(path) in str(exc)
            outcomes.append("error")
    # Each kill gave one of the two (any other exception has failed the test already).
    assert len(outcomes) == 15, outcomes


# -------------------------------------------------------------------- damaged and foreign files


@pytest.fixture()
def whole_run(tmp_path: Path) -> Path:
    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": {"seed": 1}}) as rec:
        for version in range(3):
            rec.save_weights("p", version, "player", np.zeros(5000, np.float32), parent=None, layout="flat")
            rec.append("pool", [{"time": 0.0, "generation": version, "policy_id": "p", "role": "player",
                                 "version": version, "parent_id": "", "parent_version": -1, "rank": 1,
                                 "env_steps": 0}])
    return path


def test_a_truncated_run_file_is_a_clear_error(whole_run: Path) -> None:
    data = whole_run.read_bytes()
    for keep in (len(data) // 2, 1000, 100):
        whole_run.write_bytes(data[:keep])
        with pytest.raises(RunFileError, match=f"run file {whole_run}.*(truncated|corrupt|not an HDF5)"):
            load_run(whole_run)


def test_a_corrupt_run_file_is_a_clear_error(whole_run: Path) -> None:
    data = bytearray(whole_run.read_bytes())
    rng = random.Random(3)
    # Scribble over the metadata after the superblock (the object headers and B-trees live there).
    for offset in rng.sample(range(96, 4096), 400):
        data[offset] ^= 0xFF
    whole_run.write_bytes(bytes(data))
    with pytest.raises(RunFileError, match=f"run file {whole_run}"):
        run = load_run(whole_run)
        run.policies()


def test_a_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5 at all\n")
    with pytest.raises(RunFileError, match="is not an HDF5 file"):
        load_run(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(10)
    with pytest.raises(RunFileError, match="is not an mpimarl run file"):
        load_run(other)
    with pytest.raises(RunFileError, match="does not exist"):
        load_run(tmp_path / "missing.h5")
