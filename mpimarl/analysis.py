"""Load run files into pandas DataFrames, read stored policy weights, and summarise a run.

Example::

    run = load_run("runs/connect_four.h5")
    run.train.groupby("policy_id").episode_return_mean.last()
    summarize(run)

Only committed rows are read (see :mod:`mpimarl.record.schema`), so a file whose writer was killed
mid-append loads cleanly. A file that a running recorder holds is refused (RunFileError) rather
than read half-updated. The loader never holds the file open after it returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from mpimarl.errors import RunFileError
from mpimarl.record.schema import (
    COMMITTED_ATTR,
    JSON_ATTRS_ATTR,
    POLICIES_GROUP,
    SCHEMA_VERSION,
    TABLES,
    TABLES_GROUP,
    columns,
    table_dtype,
)

RANDOM_BASELINE = "random"
"""Policy id of the uniform-random baseline that :func:`summarize` reports a win rate against."""

POLICY_COLUMNS = (
    "policy_id",
    "version",
    "role",
    "parent_id",
    "parent_version",
    "layout",
    "size",
    "saved",
)
"""Columns of :meth:`Run.policies`."""


@dataclass
class Run:
    """One run file loaded into memory: its config, file attributes and committed table rows."""

    path: Path
    """Path of the run file."""
    config: dict[str, Any]
    """The resolved config the run was started with (the JSON-decoded ``config`` file attribute)."""
    attrs: dict[str, Any]
    """All file attributes, JSON-decoded where they were stored as JSON."""
    train: pd.DataFrame = field(repr=False)
    """One row per trainer update (see ``TABLES['train']`` in :mod:`mpimarl.record.schema`)."""
    matches: pd.DataFrame = field(repr=False)
    """One row per recorded match batch, evaluation or training."""
    ratings: pd.DataFrame = field(repr=False)
    """One row per rating update."""
    pool: pd.DataFrame = field(repr=False)
    """One row per published policy snapshot."""
    payoff: pd.DataFrame = field(repr=False)
    """One row per payoff-table update (cumulative per pair; :meth:`payoff_table` keeps the last)."""
    meta: pd.DataFrame = field(repr=False)
    """Meta-strategy weights, Nash weights and Nash-averaged ratings, one row per snapshot and update."""
    exploitability: pd.DataFrame = field(repr=False)
    """Exact exploitability of latest policies and of the population mixture (OpenSpiel games)."""

    def weights(self, policy_id: str, version: int) -> np.ndarray:
        """The stored float32 weights of ``policy_id`` at ``version``.

        Raises RunFileError, naming the path, when the snapshot is not stored or is incomplete.
        """
        name = f"{POLICIES_GROUP}/{policy_id}/{int(version):06d}"
        with _opened(self.path) as f:
            group = f.get(f"{POLICIES_GROUP}/{policy_id}")
            ds = f.get(name) if group is not None else None
            if not isinstance(ds, h5py.Dataset):
                stored = sorted(int(v) for v in group) if isinstance(group, h5py.Group) else []
                raise RunFileError(
                    f"run file {self.path} stores no weights for policy {policy_id!r} "
                    f"version {version}; "
                    f"stored versions of {policy_id!r}: {stored or 'none'}"
                )
            if not ds.attrs.get("complete", False):
                raise RunFileError(
                    f"run file {self.path}: weights of policy {policy_id!r} version {version} are "
                    "incomplete (the writer stopped while saving them)"
                )
            return np.asarray(ds[...])

    def policies(self) -> pd.DataFrame:
        """One row per completely stored weight snapshot, sorted by policy id and version.

        Columns: policy_id, version, role, parent_id ('' if none), parent_version (-1 if none),
        layout, size (number of float32 values) and saved (UTC time it was written).
        """
        records: list[dict[str, Any]] = []
        with _opened(self.path) as f:
            policies = f.get(POLICIES_GROUP)
            for policy_id, group in policies.items() if isinstance(policies, h5py.Group) else []:
                for name, ds in group.items():
                    if not isinstance(ds, h5py.Dataset) or not ds.attrs.get("complete", False):
                        continue
                    records.append(
                        {
                            "policy_id": policy_id,
                            "version": int(name),
                            "role": _text(ds.attrs.get("role", "")),
                            "parent_id": _text(ds.attrs.get("parent_id", "")),
                            "parent_version": int(ds.attrs.get("parent_version", -1)),
                            "layout": _text(ds.attrs.get("layout", "")),
                            "size": int(ds.size),
                            "saved": _text(ds.attrs.get("saved", "")),
                        }
                    )
        frame = pd.DataFrame(records, columns=list(POLICY_COLUMNS))
        frame = frame.astype({"version": "int64", "parent_version": "int64", "size": "int64"})
        return frame.sort_values(["policy_id", "version"], ignore_index=True)


def load_run(path: str | Path) -> Run:
    """Load the run file at ``path``: config, attributes and the committed rows of every table.

    Raises RunFileError, naming the path and the problem, if the file is missing, not HDF5, not an
    mpimarl run file, written by a newer schema than this mpimarl reads, or truncated.
    """
    path = Path(path)
    with _opened(path) as f:
        attrs = _read_attrs(path, f)
        _check_schema(path, attrs)
        tables = {name: _read_table(path, f, name) for name in TABLES}
    config = attrs.get("config", {})
    if not isinstance(config, dict):
        raise RunFileError(f"run file {path}: the 'config' attribute is not a JSON object")
    return Run(path=path, config=config, attrs=attrs, **tables)


# -------------------------------------------------------------------- reading


LOCK_WAIT_S = 5.0
"""How long `load_run` waits for a writer's lock: an aborted job's rank 0 may take a moment to exit."""


def _open_locked(path: Path) -> h5py.File:
    # The lock (as the recorder's, "best-effort" for file systems without flock) refuses a file
    # that a live recorder holds: without SWMR, a reader racing the writer can see committed counts
    # ahead of the rows they count.
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return h5py.File(path, "r", locking="best-effort")
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RunFileError(
                    f"run file {path} is open for writing by another process (a run still going?); "
                    "load it once that process has ended"
                ) from None
            time.sleep(0.1)
        except OSError as exc:
            raise RunFileError(f"run file {path} cannot be opened (truncated or corrupt?): {exc}") from exc


@contextmanager
def _opened(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only for the ``with`` block; every way opening or reading it can fail
    becomes a RunFileError naming the path."""
    if not path.exists():
        raise RunFileError(f"run file {path} does not exist")
    if path.is_dir():
        raise RunFileError(f"run file {path} is a directory, not an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise RunFileError(f"run file {path} cannot be read: {exc.strerror or exc}") from None
    if not is_hdf5:
        raise RunFileError(f"run file {path} is not an HDF5 file (is it a run file of mpimarl?)")
    f = _open_locked(path)
    try:
        with f:
            yield f
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        # h5py reports damaged files with any of these; RunFileError itself passes through.
        raise RunFileError(f"run file {path} cannot be read (truncated or corrupt?): {exc}") from exc


def _read_attrs(path: Path, f: h5py.File) -> dict[str, Any]:
    raw = {key: f.attrs[key] for key in f.attrs}
    json_keys: list[str] = []
    if JSON_ATTRS_ATTR in raw:
        try:
            json_keys = list(json.loads(_text(raw.pop(JSON_ATTRS_ATTR))))
        except (ValueError, TypeError):
            raise RunFileError(f"run file {path}: attribute {JSON_ATTRS_ATTR!r} is not a JSON list") from None
    attrs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in json_keys:
            try:
                attrs[key] = json.loads(_text(value))
            except (ValueError, TypeError):
                raise RunFileError(f"run file {path}: attribute {key!r} is not valid JSON") from None
        else:
            attrs[key] = _plain(value)
    return attrs


def _check_schema(path: Path, attrs: dict[str, Any]) -> None:
    if "schema_version" not in attrs:
        raise RunFileError(f"{path} is not an mpimarl run file (it has no 'schema_version' attribute)")
    version = attrs["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunFileError(f"run file {path}: schema_version {version!r} is not an integer")
    if version < SCHEMA_VERSION:
        raise RunFileError(
            f"run file {path} was written with schema version {version}, older than the version "
            f"{SCHEMA_VERSION} this mpimarl reads (version 2 changed the text columns and added the "
            "payoff, meta and exploitability tables); load it with mpimarl 0.1"
        )
    if version > SCHEMA_VERSION:
        raise RunFileError(
            f"run file {path} was written with schema version {version}, newer than the version "
            f"{SCHEMA_VERSION} this mpimarl reads; upgrade mpimarl to load it"
        )
    if version < 1:
        raise RunFileError(f"run file {path}: schema version {version} is not supported (expected {SCHEMA_VERSION})")


def _read_table(path: Path, f: h5py.File, table: str) -> pd.DataFrame:
    """The committed rows of ``table`` as a DataFrame, text columns decoded to str."""
    ds = f.get(f"{TABLES_GROUP}/{table}")
    if not isinstance(ds, h5py.Dataset):
        raise RunFileError(f"run file {path} has no table /{TABLES_GROUP}/{table} (wrong schema or truncated)")
    expected = table_dtype(table)
    stored = ds.dtype.names or ()
    if stored != expected.names:
        missing = [n for n in expected.names or () if n not in stored]
        extra = [n for n in stored if n not in (expected.names or ())]
        raise RunFileError(
            f"run file {path}: table {table!r} does not match schema version {SCHEMA_VERSION} "
            f"(missing columns: {missing or 'none'}; unexpected columns: {extra or 'none'})"
        )
    if COMMITTED_ATTR not in ds.attrs:
        raise RunFileError(f"run file {path}: table {table!r} has no {COMMITTED_ATTR!r} attribute")
    committed = int(ds.attrs[COMMITTED_ATTR])
    if not 0 <= committed <= ds.shape[0]:
        raise RunFileError(
            f"run file {path}: table {table!r} claims {committed} committed rows "
            f"but stores {ds.shape[0]} "
            "(truncated or corrupt)"
        )
    data = ds[:committed] if committed else np.zeros(0, dtype=ds.dtype)
    frame = pd.DataFrame(
        {
            col.name: _decode(data[col.name]) if col.is_text else data[col.name].astype(col.dtype.newbyteorder("="))
            for col in columns(table)
        }
    )
    return frame


def _decode(values: np.ndarray) -> pd.Series:
    return pd.Series([_text(v) for v in values.tolist()], dtype="str")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _plain(value: Any) -> Any:
    """Attribute values as plain Python where they are scalars; arrays stay arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


# -------------------------------------------------------------------- summary


SUMMARY_COLUMNS = (
    "role",
    "version",
    "env_steps",
    "episode_return_mean",
    "elo",
    "win_rate_vs_random",
    "random_episodes",
)
"""Columns of :func:`summarize` (its index is policy_id)."""


def summarize(run: Run) -> pd.DataFrame:
    """One row per policy id (the index), for the CLI's end-of-run table.

    Columns: role; version (latest published, else latest trained); env_steps (of the policy's
    latest snapshot, else of its latest train row); episode_return_mean (latest non-NaN value in
    ``train``);
    elo (latest rating row); win_rate_vs_random (wins / episodes over the evaluation matches against
    the ``random`` baseline of the latest evaluated version, at its latest generation) and
    random_episodes (the episodes that rate is over). Values that are not recorded are NaN.
    """
    train, pool, ratings, matches = run.train, run.pool, run.ratings, run.matches
    ids = list(dict.fromkeys([*pool.policy_id, *train.policy_id, *ratings.policy_id]))
    rows: dict[str, dict[str, Any]] = {}
    for policy_id in ids:
        p_train = train[train.policy_id == policy_id]
        p_pool = pool[pool.policy_id == policy_id]
        p_ratings = ratings[ratings.policy_id == policy_id]
        role = next((frame.role.iloc[-1] for frame in (p_pool, p_train, p_ratings) if len(frame)), "")
        version = p_pool.version.max() if len(p_pool) else (p_train.version.max() if len(p_train) else np.nan)
        if len(p_pool):
            env_steps = p_pool.env_steps.max()
        else:
            env_steps = p_train.env_steps.iloc[-1] if len(p_train) else np.nan
        returns = p_train.episode_return_mean.dropna()
        win_rate, episodes = _win_rate_vs_random(matches, policy_id)
        rows[policy_id] = {
            "role": role,
            "version": version,
            "env_steps": env_steps,
            "episode_return_mean": returns.iloc[-1] if len(returns) else np.nan,
            "elo": p_ratings.elo.iloc[-1] if len(p_ratings) else np.nan,
            "win_rate_vs_random": win_rate,
            "random_episodes": episodes,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
    frame.index.name = "policy_id"
    return frame


def _win_rate_vs_random(matches: pd.DataFrame, policy_id: str) -> tuple[float, int]:
    """Win rate of ``policy_id`` against the random baseline in its latest evaluation, and over
    how many episodes."""
    opponents_random = matches.opponent_id.map(
        lambda opp: all(seat == RANDOM_BASELINE for seat in opp.split("+"))
    ).astype(bool)
    evals = matches[(matches.kind == "evaluation") & (matches.policy_id == policy_id) & opponents_random]
    if evals.empty:
        return np.nan, 0
    evals = evals[evals.version == evals.version.max()]
    evals = evals[evals.generation == evals.generation.max()]
    episodes = int(evals.episodes.sum())
    return (float(evals.wins.sum()) / episodes if episodes else np.nan), episodes


def summary_text(run: Run) -> str:
    """What the CLI prints for a run: its row counts and one `summarize` line per policy."""
    header = (f"Run file: {run.path} ({len(run.train)} train rows, {len(run.matches)} matches rows, "
              f"{len(run.ratings)} ratings rows, {len(run.pool)} snapshots)")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        return header + "\n" + summarize(run).to_string()
