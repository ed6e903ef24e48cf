"""The run file's redo journal (mpimarl/record/journal.py): a writer that dies at the two moments a
random kill rarely hits (inside the journal, and half-way through applying it) leaves a file that
`load_run` and `--resume` read as exactly one commit's state."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpimarl.analysis import load_run
from mpimarl.record import journal
from mpimarl.record.recorder import RunRecorder


def _pool_row(version: int) -> dict[str, object]:
    return {"time": float(version), "generation": version, "policy_id": "p", "role": "player", "version": version,
            "parent_id": "", "parent_version": -1, "rank": 1, "env_steps": 1000 * version}


def _die_during_commit(path: Path, versions: int, die: str) -> None:
    """In a forked child: record `versions` pool rows and snapshots, then die inside the next commit
    (`die`: "journal" = half-way through writing the journal, "apply" = half-way through applying it)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            rec = RunRecorder(path, {"config": {"seed": 1}})
            for version in range(versions):
                rec.save_weights("p", version, "player", np.full(50, version, np.float32), parent=None, layout="flat")
                rec.append("pool", [_pool_row(version)])
            if die == "journal":
                real_write = os.write

                def torn_write(fd: int, data: bytes) -> int:
                    real_write(fd, bytes(data)[: len(data) // 2])
                    os._exit(0)

                journal.os.write = torn_write  # type: ignore[assignment]
            else:
                real_apply = journal._apply  # noqa: SLF001

                def torn_apply(fd: int, ops: list[journal.Op]) -> None:
                    real_apply(fd, ops[: len(ops) // 2])  # the real writes, cut short
                    os._exit(0)

                journal._apply = torn_apply  # type: ignore[assignment]  # noqa: SLF001
            rec.save_weights("p", versions, "player", np.full(50, versions, np.float32), parent=None, layout="flat")
            rec.append("pool", [_pool_row(versions)])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the writer did not die inside the commit"


@pytest.mark.parametrize("die", ["journal", "apply"])
def test_a_writer_dying_inside_a_commit_leaves_one_commits_state(tmp_path: Path, die: str) -> None:
    path = tmp_path / "run.h5"
    _die_during_commit(path, 4, die)
    assert journal.journal_path(path).exists()  # the commit was cut short: a journal is left
    run = load_run(path)
    # Torn journal: the commit never happened (4 versions); whole journal, half applied: it is
    # finished by the reader (the snapshot of version 4 is stored, its pool row not yet).
    assert run.pool["version"].tolist() == [0, 1, 2, 3]
    assert run.policies()["version"].tolist() == ([0, 1, 2, 3] if die == "journal" else [0, 1, 2, 3, 4])
    assert not journal.journal_path(path).exists()  # applied (or dropped) and removed by the reader
    for version in run.policies()["version"]:
        np.testing.assert_array_equal(run.weights("p", int(version)), np.full(50, version, np.float32))


def test_a_reader_that_cannot_write_reads_a_whole_journal_as_applied(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    _die_during_commit(path, 3, "apply")
    with journal.JournaledFile(path, "r") as view, h5py.File(view, "r") as f:
        assert sorted(f["policies/p"]) == ["000000", "000001", "000002", "000003"]
    assert journal.journal_path(path).exists()  # nothing was changed on disk


def test_reopening_applies_the_journal_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    _die_during_commit(path, 3, "apply")
    rec = RunRecorder.reopen(path, {"pool": 3}, max_version=3)
    rec.append("pool", [_pool_row(3)])
    rec.close()
    run = load_run(path)
    assert run.pool["version"].tolist() == [0, 1, 2, 3]
    assert run.policies()["version"].tolist() == [0, 1, 2, 3]
