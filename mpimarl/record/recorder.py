"""The run recorder: the one writer of a run's HDF5 file (rank 0 only; no MPI here).

Crash consistency: every :meth:`RunRecorder.append` writes its rows, then bumps the table's
``committed`` attribute; rows past ``committed`` are debris that readers ignore and a later append
overwrites. Weight snapshots follow the same rule with a ``complete`` attribute written last.
HDF5 itself is not crash-consistent (a kill in the middle of its flush leaves half-written
metadata), so HDF5 writes into a :class:`~mpimarl.record.journal.JournaledFile` and each change of
the recorder is committed to the file atomically through a redo journal
(:mod:`mpimarl.record.journal`): HDF5 is flushed once, just before a commit, and a writer killed at
any point leaves the file as one whole commit left it. (Flushing inside each change as well, as the
recorder once did, only repeated HDF5's metadata writes into the journal: two to three flushes per
change, the largest part of a change's cost.)
Readers can follow the file while the recorder writes: every change is bracketed by the write
sequence beside the file (``run.h5.seq``, :mod:`mpimarl.record.live`), so a reader knows whether
what it read was a whole, flushed state.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import h5py
import numpy as np

import mpimarl
from mpimarl.errors import RunFileError, WeightsDropped
from mpimarl.record.journal import JournaledFile
from mpimarl.record.live import WriteSequence
from mpimarl.record.schema import (
    CHUNK_ROWS,
    COMMITTED_ATTR,
    FORMAT_NAME,
    JSON_ATTRS_ATTR,
    MAX_POLICY_ID_BYTES,
    POLICIES_GROUP,
    RESERVED_ATTRS,
    SCHEMA_VERSION,
    TABLES,
    TABLES_GROUP,
    rows_to_array,
    table_descriptions,
    table_dtype,
)

F = TypeVar("F", bound=Callable[..., Any])


def _writes(method: F) -> F:
    """Commit a method's changes to the file atomically once it succeeded (a method that raises
    leaves the file as the previous commit left it). HDF5's writes stay in memory until the commit
    (:class:`JournaledFile`), so only the commit itself is bracketed with the write sequence that
    readers of a live run watch. With a commit window the commit may wait (:meth:`RunRecorder.commit_due`)."""

    @functools.wraps(method)
    def committed(self: RunRecorder, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        self._commit()
        return result

    return cast(F, committed)


def snapshot_name(version: int) -> str:
    """HDF5 dataset name of a weight snapshot inside ``/policies/<policy_id>``."""
    return f"{version:06d}"


def refuse_existing(path: str | Path) -> None:
    """RunFileError when a run file is already at `path`: a new run never overwrites what was recorded."""
    if Path(path).exists():
        raise RunFileError(f"run file {path} already exists; choose a new path, remove it, "
                           "or continue it with --resume")


class RunRecorder:
    """Sole writer of a run's HDF5 file (rank 0 only).

    Creates the file with its attributes and empty tables, appends rows to the tables, stores policy
    weight snapshots and sets file attributes. Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Any]) -> None:
        """Create the run file at ``path`` (its folder is created if missing) and write ``attrs``.

        Raises RunFileError, naming the path, if the file already exists or cannot be created;
        ValueError if an attribute name is reserved or a value cannot be stored.
        """
        self._path = Path(path)
        encoded = {key: _encode_attr(key, value) for key, value in attrs.items()}
        refuse_existing(self._path)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._live = WriteSequence(self._path)  # odd until the new file is flushed
        except OSError as exc:
            raise RunFileError(f"cannot create run file {self._path}: {_reason(exc)}") from None
        try:
            # The journaled file's flock keeps HDF5 readers that lock out while this process writes
            # (a reader of a live, non-SWMR file can see half-updated metadata); file systems
            # without flock still work, unguarded.
            self._raw = JournaledFile(self._path, "x")
            self._file = h5py.File(self._raw, "w")
        except OSError as exc:
            self._live.close()
            raise RunFileError(f"cannot create run file {self._path}: {_reason(exc)}") from None
        self._json_keys: list[str] = []
        self._closed = False
        self._committed: dict[str, int] = {}
        self._init_grouping()
        self._observers: list[tuple[Callable[[str, np.ndarray], None], Callable[[], None] | None]] = []
        try:
            root = self._file.attrs
            root["format"] = FORMAT_NAME
            root["schema_version"] = SCHEMA_VERSION
            root["mpimarl_version"] = mpimarl.__version__
            root["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for key, (value, is_json) in encoded.items():
                self._write_attr(key, value, is_json)
            root[JSON_ATTRS_ATTR] = json.dumps(self._json_keys)
            tables = self._file.create_group(TABLES_GROUP)
            for name in TABLES:
                ds = tables.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    chunks=(CHUNK_ROWS,),
                    dtype=table_dtype(name),
                )
                ds.attrs["description"] = json.dumps(table_descriptions(name))
                ds.attrs[COMMITTED_ATTR] = np.int64(0)
                self._committed[name] = 0
            self._file.create_group(POLICIES_GROUP)
            self._commit()
        except BaseException:
            self._file.close()
            self._raw.close()
            self._live.close()
            raise
        self._live.done()

    # ---------------------------------------------------------------- tables

    @_writes
    def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (dicts of column -> value) to ``table`` and make them durable.

        Every row is checked first (see :func:`mpimarl.record.schema.rows_to_array`), so a bad row
        raises ValueError and writes nothing. Then the rows are written and the table's ``committed``
        count raised; the commit (now, or at the end of the commit window) makes both durable at once.
        """
        self._check_open()
        data = rows_to_array(table, rows)
        if len(data) == 0:
            return
        ds = self._file[TABLES_GROUP][table]
        start = self._committed[table]
        end = start + len(data)
        # Start at `committed`, not at the dataset's length: debris from an interrupted append is
        # overwritten rather than kept.
        ds.resize((end,))
        ds[start:end] = data
        ds.attrs.modify(COMMITTED_ATTR, np.int64(end))
        self._committed[table] = end
        for observe, _ in self._observers:
            observe(table, data)

    def add_observer(self, observe: Callable[[str, np.ndarray], None], close: Callable[[], None] | None = None) -> None:
        """Call ``observe(table, rows)`` with every batch of rows once it is durable in the file (a
        structured array of :func:`~mpimarl.record.schema.table_dtype`), and ``close()`` when the
        recorder closes. Live views of the run (TensorBoard) hang here; the file stays the record."""
        self._observers.append((observe, close))

    def read_table(self, table: str) -> np.ndarray:
        """The committed rows of ``table`` as a structured array (e.g. to rebuild a view on resume)."""
        self._check_open()
        return np.asarray(self._file[TABLES_GROUP][table][: self._committed[table]])

    def row_count(self, table: str) -> int:
        """Number of committed rows in ``table``."""
        if table not in self._committed:
            raise ValueError(f"unknown table {table!r}; the tables are: {', '.join(TABLES)}")
        return self._committed[table]

    # ---------------------------------------------------------------- weights

    @_writes
    def save_weights(
        self,
        policy_id: str,
        version: int,
        role: str,
        weights: np.ndarray,
        *,
        parent: tuple[str, int] | None,
        layout: str,
    ) -> None:
        """Store a policy snapshot's weights as ``/policies/<policy_id>/<version:06d>`` (float32).

        ``parent`` is the (policy id, version) it was derived from, or None. ``layout`` says how to
        rebuild the network from the flat array (e.g. a JSON list of parameter names and shapes).
        The snapshot's ``complete`` attribute is written last (the commit makes it durable with the data); a snapshot
        already stored completely raises ValueError (snapshots are immutable).
        """
        self._check_open()
        _check_policy_id(policy_id)
        if isinstance(version, bool) or not isinstance(version, int | np.integer):
            raise TypeError(f"snapshot version must be an integer, got {version!r}")
        if version < 0:
            raise ValueError(f"snapshot version must be >= 0, got {version}")
        if not isinstance(layout, str):
            raise TypeError(f"snapshot layout must be a string, got {type(layout).__name__}")
        parent_id, parent_version = parent if parent is not None else ("", -1)
        group = self._file[POLICIES_GROUP].require_group(policy_id)
        name = snapshot_name(int(version))
        if name in group:
            if group[name].attrs.get("complete", False):
                raise ValueError(f"snapshot {policy_id!r} version {version} is already stored in {self._path}")
            del group[name]  # debris of an interrupted save
        data = np.ascontiguousarray(weights, dtype=np.float32)
        ds = group.create_dataset(name, data=data, **self._filter(data.size))
        ds.attrs["role"] = str(role)
        ds.attrs["parent_id"] = str(parent_id)
        ds.attrs["parent_version"] = np.int64(parent_version)
        ds.attrs["layout"] = layout
        ds.attrs["saved"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ds.attrs["complete"] = True

    def _filter(self, size: int) -> dict[str, Any]:
        """HDF5 dataset options for a weight array of `size` values under the configured compression."""
        if self.compression is None or size == 0:
            return {}
        chunk = min(size, 1 << 18)  # 1 MB chunks: whole small networks, bounded reads of big ones
        options: dict[str, Any] = {"compression": self.compression, "chunks": (chunk,), "shuffle": True}
        if self.compression == "gzip":
            options["compression_opts"] = 4
        return options

    @_writes
    def drop_weights(self, policy_id: str, version: int, archive: str = "none", reason: str = "") -> None:
        """The retention policy dropped a snapshot's weights: replace its dataset by an empty one
        (``archive='none'``) or a float16 copy (``'float16'``, for analysis) that keeps its attributes,
        with ``stored`` saying which. HDF5 reuses the freed space for later snapshots of this session."""
        self._check_open()
        if archive not in ("none", "float16"):
            raise ValueError(f"archive must be 'none' or 'float16', got {archive!r}")
        group = self._file[POLICIES_GROUP].get(policy_id)
        name = snapshot_name(int(version))
        if group is None or name not in group or not group[name].attrs.get("complete", False):
            raise KeyError(f"snapshot {policy_id}@{version} is not stored in {self._path}")
        old = group[name]
        if str(old.attrs.get("stored", "float32")) != "float32":
            return
        attrs = {k: old.attrs[k] for k in old.attrs if k != "complete"}
        data = old[()].astype(np.float16) if archive == "float16" else np.zeros(0, np.float16)
        del group[name]
        ds = group.create_dataset(name, data=data, **self._filter(data.size))
        for key, value in attrs.items():
            ds.attrs[key] = value
        ds.attrs["stored"] = "float16" if archive == "float16" else "none"
        ds.attrs["retention"] = reason or "dropped"
        ds.attrs["complete"] = True

    # ---------------------------------------------------------------- attributes

    @_writes
    def set_attr(self, key: str, value: Any) -> None:
        """Set (or replace) a file attribute, e.g. ``finished=True`` or a JSON summary; then commit.

        Dicts, lists, tuples and None are stored as JSON strings and decoded by the loader.
        """
        self._check_open()
        stored, is_json = _encode_attr(key, value)
        self._write_attr(key, stored, is_json)
        self._file.attrs[JSON_ATTRS_ATTR] = json.dumps(self._json_keys)

    def _write_attr(self, key: str, value: Any, is_json: bool) -> None:
        self._file.attrs[key] = value
        if is_json and key not in self._json_keys:
            self._json_keys.append(key)
        elif not is_json and key in self._json_keys:
            self._json_keys.remove(key)

    # ---------------------------------------------------------------- lifetime

    @property
    def path(self) -> Path:
        """Path of the run file."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def close(self) -> None:
        """Flush and close the file. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        for _, close in getattr(self, "_observers", []):
            if close is not None:
                close()
        live = getattr(self, "_live", None)
        if live is None:
            self._close_file()
            return
        try:
            self._raw.wait()  # a background commit first (the write sequence has one writer at a time)
        except BaseException:
            self._raw.close()
            live.close()
            raise
        with live.writing():
            self._close_file()
        live.close()

    def _close_file(self) -> None:
        try:
            self._file.close()
            self._raw.commit()  # what HDF5 wrote while closing, and anything a commit window held
        finally:
            self._raw.close()

    def _init_grouping(self) -> None:
        self.commit_window_s = 0.0
        self.compression: str | None = None
        self._pending_since: float | None = None  # monotonic time of the oldest change not committed
        self.commits = 0

    def configure(self, *, commit_window_s: float = 0.0, compression: str | None = None) -> None:
        """Group commits within `commit_window_s` seconds (0: commit every change at once and wait for it;
        more: a writer thread commits each group, so no caller waits for the fsyncs) and store new weight
        snapshots with the HDF5 filter `compression` ('gzip', 'lzf' or None)."""
        if commit_window_s < 0:
            raise ValueError(f"commit_window_s must be >= 0, got {commit_window_s}")
        if compression not in (None, "none", "gzip", "lzf"):
            raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
        self.commit_window_s = float(commit_window_s)
        self.compression = None if compression == "none" else compression
        if self.commit_window_s == 0.0:
            self.commit()

    @property
    def pending(self) -> bool:
        """Whether changes wait for a commit (a commit window is open, or the writer thread is busy)."""
        return self._pending_since is not None or self._raw.pending

    def commit_due(self) -> bool:
        """Commit the changes waiting longer than the commit window; True if it committed. Call it
        whenever the caller is idle (rank 0's serving loop does)."""
        if self._pending_since is None or time.monotonic() - self._pending_since < self.commit_window_s:
            return False
        if self.commit_window_s > 0.0:
            self._commit_in_background()
        else:
            self.commit()
        return self._pending_since is None

    def commit(self) -> None:
        """Commit every change made so far now and wait for it (before a checkpoint that counts the rows)."""
        if self._closed:
            return
        self._file.flush()
        self._pending_since = None
        self._raw.wait()  # a background commit first (the write sequence has one writer at a time)
        if not self._raw.pending:
            return
        live = getattr(self, "_live", None)
        if live is None:
            self._raw.commit()
        else:
            with live.writing():
                self._raw.commit()
        self.commits += 1

    def _commit(self) -> None:
        """Flush HDF5's state into the journaled file and commit it (see mpimarl.record.journal),
        now or, with a commit window, once the oldest waiting change is that old (in the background)."""
        if self._closed:
            return
        if self.commit_window_s > 0.0:
            now = time.monotonic()
            if self._pending_since is None:
                self._pending_since = now
            if now - self._pending_since >= self.commit_window_s:
                self._commit_in_background()
            return
        self.commit()

    def _commit_in_background(self) -> None:
        """Grouped commits: hand everything so far to the writer thread, unless it is still busy with the
        previous group (then the changes wait for the next call: they form the next group)."""
        if self._raw.committing:
            return
        self._file.flush()
        self._pending_since = None
        self._raw.wait()  # fold the finished commit in (and raise its error)
        if not self._raw.pending:
            return
        live = getattr(self, "_live", None)
        self._raw.start_commit(live.writing if live is not None else None)
        self.commits += 1

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the recorder of {self._path} is closed")

    # ---------------------------------------------------------------- resume

    @classmethod
    def reopen(cls, path: str | Path, committed: Mapping[str, int],
               max_version: int | Mapping[str, int]) -> RunRecorder:
        """Reopen an existing run file to continue it from a checkpoint (`mpimarl train --resume`).

        Every table is cut back to ``committed[table]`` rows, the counts the checkpoint saw (never
        more than the file's own ``committed``): rows recorded after the checkpoint are dropped, as
        the resumed run records them again, so no row is lost or repeated. Weight snapshots with a
        version above ``max_version`` (published after the checkpoint) and incomplete ones are
        deleted (a mapping gives each policy its own last version: the async schedule). ``finished``
        is reset; a recorded ``failure`` moves into the ``resumes`` history.
        Raises RunFileError naming the path when the file cannot be opened, is not a run file, or
        has fewer rows than the checkpoint expects.
        """
        self = cls.__new__(cls)
        self._path = Path(path)
        self._observers = []
        try:
            self._live = WriteSequence(self._path)  # odd until the cut-back file is flushed
        except OSError as exc:
            raise RunFileError(f"cannot reopen run file {self._path}: {_reason(exc)}") from None
        try:
            self._raw = JournaledFile(self._path, "r+")  # applies a killed writer's whole journal
        except OSError as exc:
            self._live.close()
            raise RunFileError(f"cannot reopen run file {self._path}: {_reason(exc)}") from None
        try:
            self._file = h5py.File(self._raw, "r+")
        except OSError as exc:
            self._raw.close()
            self._live.close()
            raise RunFileError(f"cannot reopen run file {self._path}: {_reason(exc)}") from None
        self._closed = False
        self._init_grouping()
        try:
            root = self._file.attrs
            if root.get("format") != FORMAT_NAME or TABLES_GROUP not in self._file:
                raise RunFileError(f"{self._path} is not an mpimarl run file")
            self._json_keys = list(json.loads(str(root.get(JSON_ATTRS_ATTR, "[]"))))
            self._committed = {}
            for name in TABLES:
                ds = self._file[TABLES_GROUP][name]
                have = int(ds.attrs[COMMITTED_ATTR])
                keep = int(committed.get(name, 0))
                if keep > have:
                    raise RunFileError(f"run file {self._path}: table {name!r} has {have} committed rows but the "
                                       f"checkpoint was taken after {keep}; the file does not belong to it")
                ds.attrs.modify(COMMITTED_ATTR, np.int64(keep))
                ds.resize((keep,))
                self._committed[name] = keep
            for policy_id, group in self._file[POLICIES_GROUP].items():
                last = max_version if isinstance(max_version, int) else int(max_version.get(policy_id, -1))
                for name in list(group):
                    ds = group[name]
                    if int(name) > last or not ds.attrs.get("complete", False):
                        del group[name]
            self._commit()
        except BaseException:
            self._file.close()
            self._raw.close()
            self._live.close()
            raise
        self._live.done()
        return self

    def read_weights(self, policy_id: str, version: int) -> np.ndarray:
        """A stored snapshot's flat float32 weights; KeyError naming it when missing or incomplete."""
        self._check_open()
        group = self._file[POLICIES_GROUP].get(policy_id)
        name = snapshot_name(int(version))
        if group is None or name not in group or not group[name].attrs.get("complete", False):
            raise KeyError(f"snapshot {policy_id}@{version} is not stored in {self._path}")
        ds = group[name]
        if str(ds.attrs.get("stored", "float32")) != "float32":
            raise WeightsDropped(f"the weights of snapshot {policy_id}@{version} were dropped by the retention "
                                 f"policy (pool.keep_latest and the other pool.keep* settings) in {self._path}")
        return np.asarray(ds[()], dtype=np.float32)

    def weights_stored(self, policy_id: str, version: int) -> bool:
        """Whether the snapshot's float32 weights are stored whole (not dropped by the retention policy)."""
        self._check_open()
        group = self._file[POLICIES_GROUP].get(policy_id)
        name = snapshot_name(int(version))
        if group is None or name not in group:
            return False
        ds = group[name]
        return bool(ds.attrs.get("complete", False)) and str(ds.attrs.get("stored", "float32")) == "float32"

    def get_attr(self, key: str, default: Any = None) -> Any:
        """A file attribute as `set_attr` stored it (JSON ones decoded), or `default`."""
        self._check_open()
        if key not in self._file.attrs:
            return default
        value = self._file.attrs[key]
        return json.loads(str(value)) if key in self._json_keys else value

    @_writes
    def del_attr(self, key: str) -> None:
        """Remove a file attribute (nothing when it is absent); then commit."""
        self._check_open()
        if key in RESERVED_ATTRS:
            raise ValueError(f"file attribute {key!r} is reserved for the recorder")
        if key in self._file.attrs:
            del self._file.attrs[key]
        if key in self._json_keys:
            self._json_keys.remove(key)
            self._file.attrs[JSON_ATTRS_ATTR] = json.dumps(self._json_keys)


# -------------------------------------------------------------------- helpers


def _encode_attr(key: str, value: Any) -> tuple[Any, bool]:
    """The value to store for file attribute ``key`` and whether it was JSON-encoded."""
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"file attribute name must be a non-empty string without '/', got {key!r}")
    if key in RESERVED_ATTRS:
        raise ValueError(f"file attribute {key!r} is reserved for the recorder")
    if value is None or isinstance(value, dict | list | tuple):
        try:
            return json.dumps(value, allow_nan=True), True
        except (TypeError, ValueError) as exc:
            raise ValueError(f"file attribute {key!r} cannot be stored as JSON: {exc}") from None
    if isinstance(value, str | bytes | bool | int | float | np.generic):
        return value, False
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value, False
    raise ValueError(
        f"file attribute {key!r} has type {type(value).__name__}; "
        "use a str, number, bool, numeric array, or a JSON-compatible dict/list"
    )


def _check_policy_id(policy_id: str) -> None:
    if not isinstance(policy_id, str) or not policy_id or "/" in policy_id or policy_id in {".", ".."}:
        raise ValueError(f"policy id must be a non-empty string without '/', got {policy_id!r}")
    if len(policy_id.encode("utf-8")) > MAX_POLICY_ID_BYTES:
        raise ValueError(f"policy id {policy_id!r} is longer than {MAX_POLICY_ID_BYTES} UTF-8 bytes")


def _reason(exc: OSError) -> str:
    """A short reason for an OSError (strerror when there is one)."""
    return exc.strerror or str(exc)
