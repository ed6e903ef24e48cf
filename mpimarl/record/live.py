"""Reading a run file while its writer is alive: a write sequence beside the file (a seqlock).

HDF5's own single-writer/multiple-reader mode (SWMR) does not fit a run file: the recorder creates a
dataset for every weight snapshot and rewrites attributes (``committed``, ``finished``), and SWMR
allows neither once it is on; its tables also hold variable-length text. So the writer announces
its writes instead, in a small file beside the run file, ``run.h5.seq``:

- the writer holds an exclusive ``flock`` on it for as long as the run file is open (a killed
  writer's lock goes with its process), and
- it holds an 8-byte counter that the writer makes odd before it touches the run file and even
  again once its changes are flushed (:meth:`WriteSequence.writing`).

A reader (:func:`read_consistent`) notes the counter, opens the run file without HDF5's file lock,
reads what it needs into memory, closes it and reads the counter again: if it was even and has not
moved, what was read is a state the writer had flushed whole; otherwise it reads again, and asks the
writer for a pause (``run.h5.seq.wait``), which holds its next change back for at most 0.2 s.
Where no writer holds the lock, the file is read directly.

Shared file systems: HDF5 locks files with ``flock`` by default, which some NFS and Lustre mounts
refuse; set ``HDF5_USE_FILE_LOCKING=FALSE`` for both the run and the readers there. Lustre keeps
POSIX ordering, so following a live run works; NFS clients may see the two files' updates late or
out of order, so follow a live run from the writer's node, or read once it has ended.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

SEQ_SUFFIX = ".seq"
"""The write sequence of ``run.h5`` is ``run.h5.seq``."""

WAIT_SUFFIX = ".seq.wait"
"""A reader that keeps missing the writer's pauses touches ``run.h5.seq.wait``; the writer then holds
its next change back briefly (at most `WRITER_YIELD_S`) so the reader gets a quiet window."""

WRITER_YIELD_S = 0.2
STALE_WAIT_S = 5.0  # a request not renewed this long is a dead reader's: the writer ignores it

T = TypeVar("T")


def sequence_path(path: Path) -> Path:
    """Where the write sequence of run file `path` lives."""
    return path.with_name(path.name + SEQ_SUFFIX)


def wait_path(path: Path) -> Path:
    """Where readers of run file `path` ask its writer for a pause."""
    return path.with_name(path.name + WAIT_SUFFIX)


class WriteSequence:
    """The writer's side: hold the lock, make the counter odd around every change of the run file."""

    def __init__(self, run_path: Path) -> None:
        """Create (or take over a dead writer's) ``run.h5.seq`` and lock it; the counter starts odd,
        as the run file is about to be created: call :meth:`done` once it is flushed."""
        self.path = sequence_path(run_path)
        self._wait = wait_path(run_path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(self._fd)
                raise BlockingIOError(f"{run_path} is being written by another live process") from None
            # A file system without flock: readers go by the counter alone (see live_writer).
        self._count = 1
        self._store()

    def _store(self) -> None:
        if self._fd < 0:  # closed: the run file is closed too, nothing is written any more
            return
        os.pwrite(self._fd, struct.pack("<q", self._count), 0)

    def begin(self) -> None:
        """The run file is about to change: make the counter odd (after a short pause if a reader
        asked for one)."""
        if self._count % 2 == 0:
            self._yield_to_readers()
            self._count += 1
            self._store()

    def done(self) -> None:
        """The run file's changes are flushed: make the counter even."""
        if self._count % 2 == 1:
            self._count += 1
            self._store()

    def _yield_to_readers(self) -> None:
        """A writer appending in a tight loop would never leave a reader a quiet window: while a
        fresh request from a reader stands, hold this change back (bounded; one stat otherwise)."""
        try:
            asked = os.stat(self._wait).st_mtime
        except OSError:
            return
        if time.time() - asked > STALE_WAIT_S:
            return
        end = time.monotonic() + WRITER_YIELD_S
        while time.monotonic() < end and self._wait.exists():
            time.sleep(0.002)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Bracket one change of the run file (append, snapshot, attribute, close)."""
        self.begin()
        try:
            yield
        finally:
            self.done()

    def close(self) -> None:
        """The run file is closed: remove the sequence file and release the lock."""
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1


def live_writer(run_path: Path) -> bool:
    """Whether a live process holds the write sequence of `run_path` (so the file may change)."""
    path = sequence_path(run_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # held by the writer (or no flock here: assume a writer, follow the counter)
    else:
        return False  # a killed writer's leftover: nobody writes
    finally:
        os.close(fd)


def _count(run_path: Path) -> int | None:
    """The writer's counter (opened afresh each time, so NFS close-to-open sees the latest), or
    None once the writer has closed the run file."""
    try:
        with open(sequence_path(run_path), "rb") as f:
            data = f.read(8)
    except FileNotFoundError:
        return None
    return struct.unpack("<q", data)[0] if len(data) == 8 else 1


class LiveReadError(RuntimeError):
    """No consistent read of a live run file within the time allowed (the writer never paused)."""


def read_consistent(run_path: Path, read: Callable[[], T], timeout: float = 30.0) -> T:
    """Call `read()` (which opens, reads and closes `run_path` without HDF5 locking) until it saw a
    state the live writer had flushed whole; return its result.

    An exception from `read()` while the writer was changing the file counts as a torn read and is
    retried; one while the counter stood still is the file's own problem and is raised.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    asked = False
    try:
        while True:
            before = _count(run_path)
            if before is None:  # the writer has just closed the file: a plain read is safe now
                return read()
            if before % 2 == 0:
                try:
                    result = read()
                except Exception:
                    if _count(run_path) == before:
                        raise
                else:
                    if _count(run_path) == before:
                        return result
            if time.monotonic() > deadline:
                raise LiveReadError(f"the writer of {run_path} did not pause for {timeout:.0f} s")
            asked = _ask_for_pause(run_path) or asked
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    finally:
        if asked:
            wait_path(run_path).unlink(missing_ok=True)


def _ask_for_pause(run_path: Path) -> bool:
    """Touch the wait file (a read-only reader cannot, and keeps retrying without it)."""
    try:
        wait_path(run_path).touch()
    except OSError:
        return False
    return True
