"""The run file as the pool's weight store: grouped commits, dropped and archived weights, compression.

The kill -9 test of the grouped path forks a real RunRecorder writing as rank 0 does with a commit
window, compression and the retention policy dropping old weights, kills it at random moments and
checks that every load sees one whole commit.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.errors import WeightsDropped
from mpimarl.record.live import sequence_path
from mpimarl.record.recorder import RunRecorder

KILLS = 12
KEEP = 3  # the writer keeps the latest 3 versions' weights, and every 5th


def _pool_row(version: int) -> dict[str, object]:
    return {"time": float(version), "generation": version, "policy_id": "p", "role": "player", "version": version,
            "parent_id": "", "parent_version": -1, "rank": 1, "env_steps": 1000 * version}


def _retention_row(version: int) -> dict[str, object]:
    return {"time": float(version), "generation": version, "policy_id": "p", "role": "player", "version": version,
            "weights": "none", "reason": "dropped"}


def _write_forever(path: Path, ready_fd: int) -> None:
    """Rank 0's order: weights, pool row, train rows; then the retention row and the drop."""
    rec = RunRecorder(path, {"config": {"seed": 1}})
    rec.configure(commit_window_s=0.005, compression="gzip")
    os.write(ready_fd, b"x")
    row = 0
    for version in range(10**9):
        rec.save_weights("p", version, "player", np.full(100 + version, version, np.float32), parent=None,
                         layout="flat")
        rec.append("pool", [_pool_row(version)])
        size = 1 + version % 5
        rec.append("train", [{"time": float(r), "generation": r, "rank": 1, "policy_id": "p", "role": "player",
                              "version": version, "env_steps": 128 * r, "episodes": r}
                             for r in range(row, row + size)])
        row += size
        old = version - KEEP
        if old >= 0 and old % 5:
            rec.append("retention", [_retention_row(old)])
            rec.drop_weights("p", old, "none", "dropped")
        rec.commit_due()
        os.write(ready_fd, b"v")  # one more version written (the test kills after a random number of them)


def _fork_writer(path: Path) -> tuple[int, int]:
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


@pytest.mark.slow
def test_kill_9_of_a_writer_with_grouped_commits_and_dropped_weights_leaves_one_whole_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPIMARL_RUN_FILE_FSYNC", "0")  # a killed process loses nothing the kernel has
    rng = random.Random(11)
    versions_seen = []
    for i in range(KILLS):
        path = tmp_path / f"run{i}.h5"
        pid, ready = _fork_writer(path)
        try:
            target = rng.randrange(1, 25)  # versions to wait for, then a random moment inside the next ones
            got = 0
            while got <= target:
                assert select.select([ready], [], [], 60)[0], "the writer stalled"
                got += len(os.read(ready, 4096))
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            os.close(ready)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the writer ended on its own"
        run = load_run(path)
        pool, train = run.pool, run.train
        assert pool["version"].tolist() == list(range(len(pool)))
        assert train["generation"].tolist() == list(range(len(train)))
        if len(train):
            assert train["version"].max() < len(pool)
        stored = run.policies()
        assert set(pool["version"]) <= set(stored["version"])
        dropped = set(stored.version[stored.stored == "none"])
        recorded = set(run.retention.version)
        assert dropped <= recorded  # the row is appended before the weights go
        assert recorded <= set(pool["version"])
        for version in stored.version[stored.stored == "float32"]:
            np.testing.assert_array_equal(run.weights("p", int(version)), np.full(100 + version, version, np.float32))
        for version in dropped:
            assert version % 5 and version < len(pool) - KEEP + 1
        assert run.pool.weights_stored.tolist() == [v not in recorded for v in pool.version]
        versions_seen.append(len(pool))
    assert max(versions_seen) > 5, "the kills should land mid-run, not only at the start"


def test_grouped_commits_hold_changes_until_the_window_passes_and_close_commits_them(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    rec = RunRecorder(path, {"config": {"seed": 1}})
    rec.configure(commit_window_s=30.0)
    before = rec.commits
    for version in range(20):
        rec.save_weights("p", version, "player", np.full(10, version, np.float32), parent=None, layout="flat")
        rec.append("pool", [_pool_row(version)])
    assert rec.commits == before and rec.pending  # nothing reached the file yet
    np.testing.assert_array_equal(rec.read_weights("p", 7), np.full(10, 7, np.float32))  # readable in memory
    assert rec.row_count("pool") == 20
    assert not rec.commit_due()  # the window has not passed
    rec.commit()
    assert rec.commits == before + 1 and not rec.pending
    assert len(load_run(path).pool) == 20  # a live reader sees the commit
    rec.append("pool", [_pool_row(20)])
    rec.close()  # commits what the window held
    assert len(load_run(path).pool) == 21 and not sequence_path(path).exists()


def test_dropped_and_archived_weights_and_the_errors_that_name_them(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    config = {"seed": 1, "pool": {"keep_latest": 2, "keep_every": None, "keep_weight_above": None}}
    weights = np.linspace(-1, 1, 1000, dtype=np.float32)
    with RunRecorder(path, {"config": config}) as rec:
        rec.configure(compression="lzf")
        for version in range(4):
            rec.save_weights("p", version, "player", weights + version, parent=None, layout="flat")
            rec.append("pool", [_pool_row(version)])
        rec.append("retention", [_retention_row(0), dict(_retention_row(1), weights="float16")])
        rec.drop_weights("p", 0, "none")
        rec.drop_weights("p", 1, "float16")
        with pytest.raises(WeightsDropped, match=r"p@0 were dropped by the retention policy"):
            rec.read_weights("p", 0)
        np.testing.assert_array_equal(rec.read_weights("p", 2), weights + 2)  # lzf is lossless
    run = load_run(path)
    stored = run.policies().set_index("version")
    assert stored.stored.tolist() == ["none", "float16", "float32", "float32"]
    assert stored["size"].tolist() == [0, 1000, 1000, 1000]
    assert run.pool.weights_stored.tolist() == [False, False, True, True]
    with pytest.raises(WeightsDropped, match=r"p@0 were dropped by the retention policy \(pool.keep_latest=2\)"):
        run.weights("p", 0)
    with pytest.raises(WeightsDropped, match=r"p@0 .*pool.keep_latest=2"):
        run.policy("p", 0)
    archived = run.weights("p", 1)
    assert archived.dtype == np.float32 and np.abs(archived - (weights + 1)).max() < 2e-3  # float16 precision


def test_a_run_file_from_before_the_retention_table_still_loads(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "run.h5"
    with RunRecorder(path, {"config": {"seed": 1}}) as rec:
        rec.save_weights("p", 0, "player", np.zeros(3, np.float32), parent=None, layout="flat")
        rec.append("pool", [_pool_row(0)])
    with h5py.File(path, "r+") as f:
        del f["tables/retention"]
    run = load_run(path)
    assert run.retention.empty and list(run.retention.columns)[-2:] == ["weights", "reason"]
    assert run.pool.weights_stored.tolist() == [True]
    assert run.policies().stored.tolist() == ["float32"]
