"""Atomic commits of a run file: HDF5's writes go through a redo journal (``run.h5.journal``).

HDF5 (without SWMR) is not crash-consistent: a flush writes the dirty metadata of the cache (object
headers, B-tree nodes, local heaps, the superblock) one block at a time, in no particular order, and
may reuse space it freed earlier in the session. A writer killed in the middle of a flush leaves some
blocks new and some old, e.g. a group's local heap whose header points at a data block that was
never written ("bad heap free list"): the whole file is then unreadable, committed rows included.
Flushing after every change only makes that window short, not safe.

So the recorder does not let HDF5 touch the file directly. It opens the file through h5py's
``fileobj`` driver with a :class:`JournaledFile`, which keeps every write (and truncation) HDF5 makes
in memory, on top of the file's bytes, until :meth:`JournaledFile.commit`. The recorder commits after
each of its changes, once HDF5 has flushed a whole state. A commit:

1. writes all pending writes to ``run.h5.journal``, then a trailer with their length and CRC-32, and
   fsyncs it (so a lost node, not only a killed process, finds a whole journal or none);
2. applies them to the run file and fsyncs it;
3. removes the journal.

A writer killed before the trailer is written leaves the run file as it was at the previous commit
(the partial journal is ignored and removed); one killed after it leaves a whole journal, which the
next opener applies (:func:`recover`; applying twice is harmless). Either way the file holds exactly
the state of one commit. Readers never see a journal of a live writer: the write sequence
(:mod:`mpimarl.record.live`) stays odd until the journal is gone.

Set ``MPIMARL_RUN_FILE_FSYNC=0`` to skip the two fsyncs (a killed process still loses nothing; a
crashed node may).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import struct
import threading
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

JOURNAL_SUFFIX = ".journal"
"""The journal of ``run.h5`` is ``run.h5.journal``."""

_MAGIC = b"MPIMARLJ"
_TRAILER = struct.Struct("<8sQI")  # magic, body length, CRC-32 of the body
_TRAILER_MAGIC = b"COMMITED"
_RECORD = struct.Struct("<cQQ")  # kind (b"w" write, b"t" truncate), offset or size, data length


def journal_path(path: Path) -> Path:
    """Where the journal of run file `path` lives."""
    return path.with_name(path.name + JOURNAL_SUFFIX)


def _fsync_wanted() -> bool:
    return os.environ.get("MPIMARL_RUN_FILE_FSYNC", "1").strip().lower() not in {"0", "false", "no", "off"}


Op = tuple[bytes, int, bytes]
"""One pending change: (b"w", offset, data) or (b"t", size, b"")."""


def _encode(ops: list[Op]) -> bytes:
    parts = [_MAGIC]
    for kind, where, data in ops:
        parts.append(_RECORD.pack(kind, where, len(data)))
        parts.append(data)
    body = b"".join(parts)
    return body + _TRAILER.pack(_TRAILER_MAGIC, len(body), zlib.crc32(body))


def _decode(blob: bytes) -> list[Op] | None:
    """The ops of a whole journal, or None for a partial or damaged one."""
    if len(blob) < len(_MAGIC) + _TRAILER.size:
        return None
    magic, length, crc = _TRAILER.unpack_from(blob, len(blob) - _TRAILER.size)
    body = blob[: len(blob) - _TRAILER.size]
    if magic != _TRAILER_MAGIC or length != len(body) or zlib.crc32(body) != crc or not body.startswith(_MAGIC):
        return None
    ops: list[Op] = []
    at = len(_MAGIC)
    while at < len(body):
        kind, where, size = _RECORD.unpack_from(body, at)
        at += _RECORD.size
        ops.append((kind, where, body[at : at + size]))
        at += size
    return ops


def read_journal(path: Path) -> list[Op] | None:
    """The whole journal beside run file `path` (its ops), or None when there is none or it is partial."""
    try:
        blob = journal_path(path).read_bytes()
    except FileNotFoundError:
        return None
    return _decode(blob)


def _apply(fd: int, ops: list[Op]) -> None:
    for kind, where, data in ops:
        if kind == b"w":
            view = memoryview(data)
            while view:
                view = view[os.pwrite(fd, view, where + len(data) - len(view)) :]
        else:
            os.ftruncate(fd, where)


def _lock(fd: int) -> bool:
    """An exclusive flock on the run file (HDF5's own readers use flock too). False when another
    process holds it; True also where the file system has no flock (nothing to guard with)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
    return True


def recover(path: Path) -> bool:
    """Finish the last commit of a killed writer: apply a whole journal to `path` and remove it (a
    partial one is just removed). Does nothing while a live writer holds the file or where the
    folder is read-only (readers then use :class:`JournaledFile` in mode "r"). True if it applied."""
    journal = journal_path(path)
    if not journal.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if not _lock(fd):
            return False  # a live writer: its journal is not ours to touch
        ops = read_journal(path)
        if ops is not None:
            _apply(fd, ops)
            if _fsync_wanted():
                os.fsync(fd)
        journal.unlink(missing_ok=True)
        return ops is not None
    except OSError:
        return False
    finally:
        os.close(fd)


class JournaledFile(io.RawIOBase):
    """A run file as h5py's ``fileobj`` driver sees it: its bytes plus the changes not committed yet.

    Mode "x" creates the file, "r+" opens an existing one (applying a killed writer's whole journal
    first), "r" reads one without changing it (a whole journal is read as if applied). The writer
    modes hold an exclusive flock on the file, as HDF5's own file lock does, so HDF5 readers that lock
    keep out while it is open.
    """

    def __init__(self, path: str | Path, mode: str) -> None:
        self.path = Path(path)
        self.mode = mode
        self._ops: list[Op] = []
        self._committing: list[Op] = []  # the ops a background commit is writing (still part of the view)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pos = 0
        flags = {"x": os.O_RDWR | os.O_CREAT | os.O_EXCL, "r+": os.O_RDWR, "r": os.O_RDONLY}[mode]
        if mode == "r+":
            recover(self.path)
        self._fd = os.open(self.path, flags, 0o644)
        if mode != "r" and not _lock(self._fd):
            os.close(self._fd)
            self._fd = -1
            raise BlockingIOError(f"{self.path} is open for writing by another process")
        if mode == "x":
            journal_path(self.path).unlink(missing_ok=True)  # a stale one would be applied to the new file
        elif mode == "r":
            self._ops = read_journal(self.path) or []
        self._base_size = os.fstat(self._fd).st_size
        self._size, self._base_limit = self._sizes()

    # ---------------------------------------------------------------- the view: file + pending ops

    def _sizes(self) -> tuple[int, int]:
        """(logical size, how far the file's own bytes still show through the pending truncations)."""
        size = limit = self._base_size
        for kind, where, data in self._view_ops():
            if kind == b"w":
                size = max(size, where + len(data))
            else:
                size = where
                limit = min(limit, where)
        return size, limit

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read at the current position: the file's bytes with the pending changes on top."""
        view = memoryview(buffer).cast("B")
        start = self._pos
        n = max(0, min(len(view), self._size - start))
        view[:n] = b"\0" * n
        base = min(n, max(0, self._base_limit - start))
        if base > 0:
            got = os.preadv(self._fd, [view[:base]], start)
            if got < base:
                view[got:base] = b"\0" * (base - got)
        for kind, where, data in self._view_ops():
            if kind == b"w":
                lo, hi = max(start, where), min(start + n, where + len(data))
                if lo < hi:
                    view[lo - start : hi - start] = data[lo - where : hi - where]
            elif where < start + n:
                cut = max(where, start)
                view[cut - start : n] = b"\0" * (n - (cut - start))
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes at the current position (to the end when negative)."""
        if size is None or size < 0:
            size = max(0, self._size - self._pos)
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        """Keep a write at the current position until the next commit."""
        if self.mode == "r":
            raise io.UnsupportedOperation(f"{self.path} is open read-only")
        blob = bytes(data)  # HDF5 reuses its buffer after the call
        self._ops.append((b"w", self._pos, blob))
        self._pos += len(blob)
        self._size = max(self._size, self._pos)
        return len(blob)

    def truncate(self, size: int | None = None) -> int:
        """Keep a truncation (HDF5 sets the file's end at every flush) until the next commit."""
        if self.mode == "r":
            raise io.UnsupportedOperation(f"{self.path} is open read-only")
        size = self._pos if size is None else size
        if size != self._size:
            self._ops.append((b"t", size, b""))
            self._size = size
            self._base_limit = min(self._base_limit, size)
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (HDF5 seeks before every read and write)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def flush(self) -> None:
        """Nothing: HDF5's flush only hands its writes over; :meth:`commit` makes them durable."""

    def readable(self) -> bool:
        """Always true."""
        return True

    def writable(self) -> bool:
        """Whether the file is open for writing."""
        return self.mode != "r"

    def seekable(self) -> bool:
        """Always true."""
        return True

    # ---------------------------------------------------------------- commit

    def _view_ops(self) -> list[Op]:
        """The changes on top of the file's bytes: those being committed in the background, then the rest.
        (A background commit writes only the regions its ops cover, so the file's bytes elsewhere do
        not change under a reader.)"""
        return self._committing + self._ops if self._committing else self._ops

    @property
    def pending(self) -> bool:
        """Whether there are changes not committed yet (a background commit still running counts)."""
        return bool(self._ops) or self._thread is not None

    @property
    def committing(self) -> bool:
        """Whether a background commit is still running."""
        return self._thread is not None and self._thread.is_alive()

    def start_commit(self, bracket: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        """Commit the pending changes in a background writer thread (the fsyncs release the GIL, so the
        caller goes on); a previous background commit is finished first. `bracket()` wraps the step
        that changes the run file (the live write sequence). Call :meth:`wait` before relying on it."""
        self.wait()
        if not self._ops or self.mode == "r":
            return
        ops, self._ops = self._ops, []
        self._committing = ops
        self._thread = threading.Thread(target=self._background, args=(ops, bracket), name="run-file-commit",
                                        daemon=True)
        self._thread.start()

    def _background(self, ops: list[Op], bracket: Callable[[], AbstractContextManager[None]] | None) -> None:
        try:
            self._write_commit(ops, bracket)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by wait()
            self._error = exc

    def wait(self) -> None:
        """Finish a background commit (and raise its error, if it had one)."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        self._committing = []
        self._base_size = os.fstat(self._fd).st_size
        self._size, self._base_limit = self._sizes()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def commit(self) -> None:
        """Make the pending changes part of the file, atomically (journal, apply, remove journal).
        Call it only when HDF5 has flushed a whole state (after ``h5py.File.flush`` or ``close``)."""
        self.wait()
        if not self._ops or self.mode == "r":
            return
        self._write_commit(self._ops, None)
        self._ops = []
        self._base_size = os.fstat(self._fd).st_size
        self._size, self._base_limit = self._sizes()

    def _write_commit(self, ops: list[Op], bracket: Callable[[], AbstractContextManager[None]] | None) -> None:
        """Journal, apply, remove the journal: the steps of a commit (in the caller's or a writer thread)."""
        durable = _fsync_wanted()
        journal = journal_path(self.path)
        blob = _encode(ops)
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        with bracket() if bracket is not None else nullcontext():
            _apply(self._fd, ops)
        if durable:
            os.fsync(self._fd)
        journal.unlink()

    def close(self) -> None:
        """Close the file (uncommitted changes are dropped: commit first; a background commit is finished)."""
        try:
            self.wait()
        except OSError:
            pass  # closing after a failure: the file holds the previous whole commit
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()
