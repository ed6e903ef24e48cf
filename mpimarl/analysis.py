"""Load run files into pandas DataFrames, read stored policy weights, and summarise a run.

Example::

    run = load_run("runs/connect_four.h5")
    run.train.groupby("policy_id").episode_return_mean.last()
    summarize(run)
    policy = run.policy("player-0")          # the latest stored snapshot, acting on raw observations
    policy.act(raw_env.observe("player_0"))  # e.g. a connect-four column

Only committed rows are read (see :mod:`mpimarl.record.schema`), so a file whose writer was killed
mid-append loads cleanly. A run that is still going can be read too: the loader reads a state the
recorder had flushed whole (:mod:`mpimarl.record.live`) and never makes the writer wait. The loader
never holds the file open after it returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import h5py
import numpy as np
import pandas as pd

from mpimarl.errors import RunFileError, WeightsDropped
from mpimarl.record.journal import JournaledFile, read_journal, recover
from mpimarl.record.live import LiveReadError, live_writer, read_consistent
from mpimarl.record.schema import (
    COMMITTED_ATTR,
    JSON_ATTRS_ATTR,
    LATER_COLUMNS,
    OPTIONAL_TABLES,
    POLICIES_GROUP,
    SCHEMA_VERSION,
    TABLES,
    TABLES_GROUP,
    columns,
    table_dtype,
)

if TYPE_CHECKING:  # torch, the envs and the config load only when a policy is asked for
    import gymnasium

    from mpimarl.algos.networks import ActorCritic, FrozenPolicy, PolicyShape
    from mpimarl.envs.encoding import ObservationEncoder
    from mpimarl.league.pool import SnapshotKey
    from mpimarl.roles.context import RunContext

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
    "stored",
)
"""Columns of :meth:`Run.policies`."""

DERIVED_COLUMNS: dict[str, tuple[str, ...]] = {"pool": ("weights_stored",)}
"""Columns the loader adds to a table's frame after its stored columns: ``pool.weights_stored`` (from the
``retention`` table: False once the retention policy dropped or archived the snapshot's float32 weights)."""


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
    """One row per published policy snapshot; its column ``weights_stored`` says whether the run file
    still stores its float32 weights (False once the retention policy dropped or archived them)."""
    payoff: pd.DataFrame = field(repr=False)
    """One row per payoff-table update (cumulative per pair; :meth:`payoff_table` keeps the last)."""
    meta: pd.DataFrame = field(repr=False)
    """Meta-strategy weights, Nash weights and Nash-averaged ratings, one row per snapshot and update."""
    exploitability: pd.DataFrame = field(repr=False)
    """Exact exploitability of latest policies and of the population mixture (OpenSpiel games)."""
    retention: pd.DataFrame = field(repr=False)
    """One row per retention decision (``pool.keep*``): which snapshots keep their weights, and why."""
    _context: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def cooperative(self) -> bool:
        """Whether the run's task is cooperative (``task.kind``): judged by team return, not by wins."""
        task = self.config.get("task") if isinstance(self.config, dict) else None
        return isinstance(task, dict) and task.get("kind", "competitive") == "cooperative"

    def weights(self, policy_id: str, version: int) -> np.ndarray:
        """The stored float32 weights of ``policy_id`` at ``version``.

        Raises RunFileError, naming the path, when the snapshot is not stored or is incomplete.
        """
        name = f"{POLICIES_GROUP}/{policy_id}/{int(version):06d}"

        def read(f: h5py.File) -> np.ndarray:
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
            if _text(ds.attrs.get("stored", "float32")) == "none":
                raise WeightsDropped(dropped_message(self.path, policy_id, int(version), self.config))
            return np.asarray(ds[...], dtype=np.float32)  # a float16 archive reads as float32

        return _read(self.path, read)

    def policies(self) -> pd.DataFrame:
        """One row per completely stored weight snapshot, sorted by policy id and version.

        Columns: policy_id, version, role, parent_id ('' if none), parent_version (-1 if none),
        layout, size (number of values stored), saved (UTC time it was written) and stored: 'float32',
        'float16' (an archive the retention policy kept for analysis) or 'none' (dropped: metadata only).
        """

        def names(f: h5py.File) -> list[tuple[str, str]]:
            policies = f.get(POLICIES_GROUP)
            if not isinstance(policies, h5py.Group):
                return []
            return [(pid, name) for pid, group in policies.items() if isinstance(group, h5py.Group) for name in group]

        def record(f: h5py.File, policy_id: str, name: str) -> dict[str, Any] | None:
            ds = f.get(f"{POLICIES_GROUP}/{policy_id}/{name}")
            if not isinstance(ds, h5py.Dataset) or not ds.attrs.get("complete", False):
                return None
            return {
                "policy_id": policy_id,
                "version": int(name),
                "role": _text(ds.attrs.get("role", "")),
                "parent_id": _text(ds.attrs.get("parent_id", "")),
                "parent_version": int(ds.attrs.get("parent_version", -1)),
                "layout": _text(ds.attrs.get("layout", "")),
                "size": int(ds.size),
                "saved": _text(ds.attrs.get("saved", "")),
                "stored": _text(ds.attrs.get("stored", "float32")),
            }

        # The snapshot names first, then each snapshot on its own (a complete snapshot never changes),
        # so that each read fits between a live recorder's writes.
        records = [r for pid, name in _read(self.path, names)
                   if (r := _read(self.path, lambda f, pid=pid, name=name: record(f, pid, name))) is not None]
        frame = pd.DataFrame(records, columns=list(POLICY_COLUMNS))
        frame = frame.astype({"version": "int64", "parent_version": "int64", "size": "int64"})
        return frame.sort_values(["policy_id", "version"], ignore_index=True)

    def ranks(self) -> pd.DataFrame:
        """One row per rank of the run's first start: rank and the fields of
        :data:`mpimarl.record.schema.RANK_FIELDS` (host, device, GPU, library versions, threads). A
        file written before they were recorded gives its ``hosts`` and None elsewhere."""
        from mpimarl.record.schema import RANK_FIELDS

        recorded = self.attrs.get("ranks")
        if not isinstance(recorded, list):
            recorded = [{"host": h} for h in self.attrs.get("hosts", [])]
        rows = [{"rank": r, **{k: info.get(k) for k in RANK_FIELDS}} for r, info in enumerate(recorded)]
        return pd.DataFrame(rows, columns=["rank", *RANK_FIELDS])

    def payoff_table(self) -> pd.DataFrame:
        """The payoff table as it stood at the end: the last (cumulative) row of every (role, row,
        column) pair of the ``payoff`` rows."""
        if self.payoff.empty:
            return self.payoff.copy()
        last = self.payoff.sort_values("time").groupby(["role", "row_id", "column_id"], sort=False).tail(1)
        return last.reset_index(drop=True)

    def latest_versions(self) -> dict[str, int]:
        """Policy id -> its latest completely stored version (the final snapshot), sorted by id."""
        stored = self.policies()
        return {str(pid): int(rows.version.max()) for pid, rows in stored.groupby("policy_id", sort=True)}

    def context(self) -> RunContext:
        """The run's config, environment factory and spec, rebuilt from the recorded config.

        Built once per Run (an environment is constructed to probe it); the start-up checks of a
        training run (scripted baselines, exact evaluation) are not repeated. Raises ConfigError
        when the recorded config does not validate and EnvironmentSpecError when its environment
        cannot be built on this machine.
        """
        if self._context is None:
            from mpimarl.config import parse_config
            from mpimarl.envs.loader import resolve_env
            from mpimarl.envs.spec import RoleRule, build_env_spec
            from mpimarl.roles.context import RunContext

            config = parse_config(self.config, source=f"run file {self.path}: recorded config")
            factory = resolve_env(config.env.id, config.env.kwargs)
            spec = build_env_spec(factory, [RoleRule(r.name, r.agents, r.team) for r in config.task.roles])
            world_size = int(self.attrs.get("world_size", config.min_world_size()))
            self._context = RunContext(config, factory, spec, world_size)
        return self._context

    def policy(self, policy_id: str, version: int | None = None) -> StoredPolicy:
        """The stored snapshot ``policy_id@version`` (None: the latest stored version), ready to act.

        Raises UnknownPolicyError (a KeyError) naming the stored policy ids, UnknownVersionError (a
        ValueError) naming the stored versions, and RunFileError when the stored layout is not the
        network the recorded config builds for the policy's role (both layouts are named).
        """
        stored = self.policies()
        ids = sorted(stored.policy_id.unique())
        if policy_id not in ids:
            raise UnknownPolicyError(
                f"run file {self.path} stores no policy {policy_id!r}; stored policies: {', '.join(ids) or 'none'}"
            )
        rows = stored[stored.policy_id == policy_id]
        versions = [int(v) for v in rows.version]
        if version is None:
            version = max(versions)
        if isinstance(version, bool) or not isinstance(version, int | np.integer) or int(version) not in versions:
            raise UnknownVersionError(
                f"run file {self.path} stores no version {version!r} of policy {policy_id!r}; stored versions: "
                f"{', '.join(str(v) for v in versions)} (latest {max(versions)})"
            )
        row = rows[rows.version == int(version)].iloc[0]
        if row.stored == "none":
            raise WeightsDropped(dropped_message(self.path, policy_id, int(version), self.config))
        return StoredPolicy.build(self, policy_id, int(version), str(row.role), str(row.layout))


def dropped_message(path: Path, policy_id: str, version: int, config: dict[str, Any]) -> str:
    """What a reader asking for a dropped snapshot is told: the snapshot, and the settings that dropped it."""
    pool = config.get("pool") or {}
    settings = ", ".join(f"pool.{k}={pool.get(k)!r}" for k in ("keep_latest", "keep_every", "keep_weight_above")
                         if pool.get(k) is not None)
    return (f"run file {path}: the weights of snapshot {policy_id}@{version} were dropped by the retention "
            f"policy ({settings or 'pool.keep_latest'}); only its metadata and ratings remain. Ask for a version "
            f"whose 'stored' is 'float32' or 'float16' in Run.policies() (or rerun with pool.keep_latest unset, or "
            f"pool.keep / pool.keep_every covering it)")


class UnknownPolicyError(RunFileError, KeyError):
    """A policy id the run file does not store (the message names the stored ones)."""

    def __str__(self) -> str:
        # KeyError would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class UnknownVersionError(RunFileError, ValueError):
    """A version of a policy the run file does not store (the message names the stored ones)."""


# -------------------------------------------------------------------- stored policies


class StoredPolicy:
    """One stored snapshot of a run as a network that acts, on raw or on encoded observations.

    `act` takes ONE raw observation of the run's environment, exactly as the environment hands it
    out (a PettingZoo dict ``{'observation', 'action_mask'}`` for connect four, an array for MPE),
    encodes it with the same encoder the adapters use (:mod:`mpimarl.envs.encoding`) and returns an
    action the raw environment accepts. `acting_policy` is the batched form the rollout runner
    (:class:`mpimarl.rollout.runner.VectorMatches`) drives on the adapters' flat observations.
    """

    def __init__(self, run_path: Path, policy_id: str, version: int, role: str, shape: PolicyShape,
                 weights: np.ndarray, encoder: ObservationEncoder, action_space: gymnasium.spaces.Space) -> None:
        """Prefer :meth:`Run.policy`; this loads `weights` into an ActorCritic of `shape` (CPU)."""
        from mpimarl.algos.networks import ActorCritic, load_flat_weights
        from mpimarl.envs.encoding import make_action_preparer

        self.run_path = run_path
        self.policy_id = policy_id
        self.version = version
        self.role = role
        self.shape = shape
        self.weights = weights
        self.encoder = encoder
        self.action_space = action_space
        self._prepare = make_action_preparer(action_space)
        self.net: ActorCritic = ActorCritic(shape)
        try:
            load_flat_weights(self.net, weights)
        except ValueError as exc:
            raise RunFileError(f"run file {run_path}: weights of {policy_id}@{version}: {exc}") from None
        self.net.eval()

    @staticmethod
    def build(run: Run, policy_id: str, version: int, role: str, layout: str) -> StoredPolicy:
        """Load ``policy_id@version`` of `run` (its role and stored layout already looked up)."""
        ctx = run.context()
        if role not in ctx.spec.roles:
            raise RunFileError(
                f"run file {run.path}: policy {policy_id!r} plays role {role!r}, which the recorded config "
                f"does not define (its roles: {', '.join(ctx.spec.roles)})"
            )
        shape = ctx.shape(role)
        if layout != shape.layout:
            raise RunFileError(
                f"run file {run.path}: {policy_id}@{version} was stored with layout {layout!r}, but the "
                f"recorded config builds {shape.layout!r} for role {role!r}; the weights cannot be loaded"
            )
        agent = ctx.spec.roles[role].agents[0]
        encoder, action_space = _agent_codec(ctx, agent)
        if encoder.size != shape.obs_size:
            raise RunFileError(
                f"run file {run.path}: agent {agent!r} now observes {encoder.size} values, the network of role "
                f"{role!r} takes {shape.obs_size}"
            )
        return StoredPolicy(run.path, policy_id, version, role, shape, run.weights(policy_id, version), encoder,
                            action_space)

    @property
    def key(self) -> SnapshotKey:
        """The snapshot's key in a policy pool: (policy id, version)."""
        from mpimarl.league.pool import SnapshotKey

        return SnapshotKey(self.policy_id, self.version)

    @property
    def label(self) -> str:
        """``policy_id@version``."""
        return f"{self.policy_id}@{self.version}"

    def encode(self, raw_obs: Any, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The flat float32 observation and bool action mask the network reads for one raw observation.

        An explicit `mask` (e.g. from an environment's ``infos``) replaces one carried by the observation.
        """
        try:
            flat, carried = self.encoder.encode(raw_obs)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{self.label}: cannot encode observation {raw_obs!r} of role {self.role!r}: "
                             f"{type(exc).__name__}: {exc}") from None
        flat = np.asarray(flat, np.float32).ravel()
        if flat.size != self.shape.obs_size:
            raise ValueError(f"{self.label}: an observation of role {self.role!r} has {self.shape.obs_size} "
                             f"values, this one encodes to {flat.size}")
        if mask is not None:
            carried = np.asarray(mask, dtype=bool).ravel()
        if carried is not None and self.shape.discrete and carried.size != self.shape.action_dim:
            raise ValueError(f"{self.label}: the action mask has {carried.size} entries, the action space "
                             f"{self.action_space} needs {self.shape.action_dim}")
        return flat, carried

    def act(self, raw_obs: Any, mask: np.ndarray | None = None, greedy: bool = False) -> Any:
        """The action for ONE raw observation, as the raw environment takes it (a Discrete index
        shifted by the space's start, or a Box array clipped to its bounds). ``greedy`` picks the
        most likely action instead of sampling."""
        import torch

        flat, legal = self.encode(raw_obs, mask)
        with torch.inference_mode():
            obs = torch.from_numpy(flat).unsqueeze(0)
            m = None if legal is None else torch.from_numpy(legal).unsqueeze(0)
            action, _ = self.net.act(obs, m, greedy)
        value = action[0].numpy()
        return self._prepare(value if not self.shape.discrete else int(value))

    def acting_policy(self, greedy: bool = False) -> FrozenPolicy:
        """The batched policy the rollout runner drives on the adapters' flat observations (CPU)."""
        import torch

        from mpimarl.algos.networks import FrozenPolicy

        return FrozenPolicy(self.shape, self.weights, torch.device("cpu"), greedy=greedy)

    def __repr__(self) -> str:
        """``StoredPolicy(player-0@3, role 'player', layout ...)``."""
        return f"StoredPolicy({self.label}, role {self.role!r}, layout {self.shape.layout!r})"


def _agent_codec(ctx: RunContext, agent: str) -> tuple[ObservationEncoder, gymnasium.spaces.Space]:
    """The observation encoder the adapters use for `agent` (built from the raw environment's
    observation space) and the agent's action space.

    An adapter whose raw environment has no observation space (OpenSpiel: a pyspiel game) already
    hands out arrays; for it the "raw" observation is that array (``env.observe(agent)[0]``, the
    encoded state) and the mask must be passed to `StoredPolicy.act`.
    """
    import gymnasium

    from mpimarl.envs.encoding import make_observation_encoder
    from mpimarl.errors import EnvironmentSpecError

    env = ctx.factory()
    try:
        raw = getattr(env, "raw_env", None)
        space = getattr(raw, "observation_space", None)
        if callable(space):  # PettingZoo: per agent; Gymnasium: an attribute
            space = space(agent)
        if not isinstance(space, gymnasium.spaces.Space):
            role = ctx.spec.roles[ctx.spec.role_of[agent]]
            space = gymnasium.spaces.Box(-np.inf, np.inf, role.obs_shape or (role.obs_size,), np.float32)
        try:
            encoder = make_observation_encoder(space)
        except ValueError as exc:
            raise EnvironmentSpecError(f"env {ctx.spec.env_id!r}, agent {agent!r}: {exc}") from None
        return encoder, env.action_space(agent)
    finally:
        env.close()


def load_run(path: str | Path) -> Run:
    """Load the run file at ``path``: config, attributes and the committed rows of every table.

    Raises RunFileError, naming the path and the problem, if the file is missing, not HDF5, not an
    mpimarl run file, written by a newer schema than this mpimarl reads, or truncated.
    """
    path = Path(path)

    def read_head(f: h5py.File) -> tuple[dict[str, Any], dict[str, int]]:
        attrs = _read_attrs(path, f)
        _check_schema(path, attrs)
        return attrs, {name: _committed(path, f, name) for name in TABLES}

    # The attributes and every table's committed count first, then each table's rows up to that
    # count, each read on its own: committed rows never change, so the tables agree with each other
    # (as of the first read) even while a live recorder appends, and each read is short enough to
    # fit between the recorder's writes.
    attrs, committed = _read(path, read_head)
    tables = {name: _frame(name, _read(path, lambda f, name=name: _table_rows(path, f, name, committed[name])))
              for name in TABLES}
    config = attrs.get("config", {})
    if not isinstance(config, dict):
        raise RunFileError(f"run file {path}: the 'config' attribute is not a JSON object")
    gone = {(p, int(v)) for p, v, w in zip(tables["retention"].policy_id, tables["retention"].version,
                                          tables["retention"].weights) if w != "float32"}
    pool = tables["pool"]
    pool["weights_stored"] = [(p, int(v)) not in gone for p, v in zip(pool.policy_id, pool.version)]
    return Run(path=path, config=config, attrs=attrs, **tables)


# -------------------------------------------------------------------- reading


LOCK_WAIT_S = 5.0
"""How long `load_run` waits for a writer's lock: an aborted job's rank 0 may take a moment to exit."""


T = TypeVar("T")


def _read(path: Path, read: Callable[[h5py.File], T]) -> T:
    """Open ``path``, call ``read`` on it and close it; every failure becomes a RunFileError.

    While a recorder writes the file (a live run), the read is repeated until it saw a state the
    recorder had flushed whole (see :mod:`mpimarl.record.live`).
    """
    if not live_writer(path):
        with _opened(path) as f:
            return read(f)

    def attempt() -> T:
        with _opened(path, locking=False) as f:
            return read(f)

    try:
        return read_consistent(path, attempt, timeout=LIVE_READ_S)
    except LiveReadError as exc:
        raise RunFileError(f"run file {path} is being written and gave no consistent read: {exc}") from None


LIVE_READ_S = 30.0
"""How long a reader of a live run keeps trying to read between the writer's changes."""


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
def _opened(path: Path, locking: bool = True) -> Iterator[h5py.File]:
    """Open ``path`` read-only for the ``with`` block; every way opening or reading it can fail
    becomes a RunFileError naming the path. ``locking=False``: without HDF5's file lock, for a
    live run whose recorder holds it (see :func:`_read`)."""
    if not path.exists():
        raise RunFileError(f"run file {path} does not exist")
    if path.is_dir():
        raise RunFileError(f"run file {path} is a directory, not an HDF5 file")
    # A writer killed in the middle of a commit left its whole journal: apply it first (or, where the
    # folder is read-only, read the file as if applied). See mpimarl.record.journal.
    pending = locking and not recover(path) and read_journal(path) is not None
    try:
        is_hdf5 = pending or h5py.is_hdf5(path)
    except OSError as exc:
        raise RunFileError(f"run file {path} cannot be read: {exc.strerror or exc}") from None
    if not is_hdf5:
        raise RunFileError(f"run file {path} is not an HDF5 file (is it a run file of mpimarl?)")
    if pending:
        try:
            f = h5py.File(JournaledFile(path, "r"), "r")
        except OSError as exc:
            raise RunFileError(f"run file {path} cannot be opened (truncated or corrupt?): {exc}") from exc
    elif locking:
        f = _open_locked(path)
    else:
        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as exc:
            raise RunFileError(f"run file {path} cannot be opened (truncated or corrupt?): {exc}") from exc
    try:
        with f:
            yield f
    except RunFileError:
        raise  # already names the file (some are KeyErrors too, e.g. WeightsDropped)
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


def _table(path: Path, f: h5py.File, table: str) -> h5py.Dataset:
    """The dataset of ``table``, checked against the schema."""
    ds = f.get(f"{TABLES_GROUP}/{table}")
    if not isinstance(ds, h5py.Dataset):
        raise RunFileError(f"run file {path} has no table /{TABLES_GROUP}/{table} (wrong schema or truncated)")
    expected = table_dtype(table)
    stored = ds.dtype.names or ()
    if stored != expected.names:
        missing = [n for n in expected.names or () if n not in stored]
        extra = [n for n in stored if n not in (expected.names or ())]
        later = LATER_COLUMNS.get(table, ())
        if not extra and missing and all(n in later for n in missing):
            return ds  # written before these columns existed: `_table_rows` fills them with NaN
        raise RunFileError(
            f"run file {path}: table {table!r} does not match schema version {SCHEMA_VERSION} "
            f"(missing columns: {missing or 'none'}; unexpected columns: {extra or 'none'})"
        )
    if COMMITTED_ATTR not in ds.attrs:
        raise RunFileError(f"run file {path}: table {table!r} has no {COMMITTED_ATTR!r} attribute")
    return ds


def _committed(path: Path, f: h5py.File, table: str) -> int:
    """How many rows of ``table`` are whole (0 for an optional table the file predates)."""
    if table in OPTIONAL_TABLES and f"{TABLES_GROUP}/{table}" not in f:
        return 0
    ds = _table(path, f, table)
    committed = int(ds.attrs[COMMITTED_ATTR])
    if not 0 <= committed <= ds.shape[0]:
        raise RunFileError(
            f"run file {path}: table {table!r} claims {committed} committed rows "
            f"but stores {ds.shape[0]} "
            "(truncated or corrupt)"
        )
    return committed


def _table_rows(path: Path, f: h5py.File, table: str, rows: int) -> np.ndarray:
    """The first ``rows`` rows of ``table`` (all committed), as a structured array."""
    if table in OPTIONAL_TABLES and f"{TABLES_GROUP}/{table}" not in f:
        return np.zeros(0, dtype=table_dtype(table))
    ds = _table(path, f, table)
    if rows > ds.shape[0]:
        raise RunFileError(f"run file {path}: table {table!r} lost committed rows (truncated or corrupt)")
    stored = ds[:rows] if rows else np.zeros(0, dtype=ds.dtype)
    expected = table_dtype(table)
    if stored.dtype.names == expected.names:
        return stored
    out = np.zeros(len(stored), dtype=expected)  # a file from before LATER_COLUMNS: those read NaN
    for name in expected.names or ():
        out[name] = stored[name] if name in (stored.dtype.names or ()) else np.nan
    return out


def _frame(table: str, data: np.ndarray) -> pd.DataFrame:
    """Rows of ``table`` as a DataFrame, text columns decoded to str."""
    return pd.DataFrame(
        {
            col.name: _decode(data[col.name]) if col.is_text else data[col.name].astype(col.dtype.newbyteorder("="))
            for col in columns(table)
        }
    )


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
"""Columns of :func:`summarize` for a competitive run (its index is policy_id)."""

COOPERATIVE_SUMMARY_COLUMNS = (
    "role",
    "version",
    "env_steps",
    "episode_return_mean",
    "eval_return_mean",
    "random_return_mean",
    "eval_episodes",
)
"""Columns of :func:`summarize` for a cooperative run: team returns instead of Elo and win rates."""


def summarize(run: Run) -> pd.DataFrame:
    """One row per policy id (the index), for the CLI's end-of-run table.

    Columns: role; version (latest published, else latest trained); env_steps (of the policy's
    latest snapshot, else of its latest train row); episode_return_mean (latest non-NaN value in
    ``train``); elo (latest rating row of its newest rated version); win_rate_vs_random (wins /
    episodes over the evaluation matches against the ``random`` baseline of the latest evaluated
    version, at its latest generation) and random_episodes (the episodes that rate is over); then
    one ``vs_<name>`` score per scripted baseline. Values that are not recorded are NaN.

    A cooperative run (``task.kind: cooperative``) has no winner: a "win" against the random
    comparator only says the team's return beat random partners' in the same seat, and an Elo built
    on those wins says nothing more. Its columns (:data:`COOPERATIVE_SUMMARY_COLUMNS`) replace elo,
    win_rate_vs_random and random_episodes by the newest evaluated version's team return in
    evaluation (eval_return_mean, a mean over eval_episodes episodes at its latest generation) and the
    random comparator's return on the same episodes (random_return_mean); a scripted comparator
    adds ``<name>_return_mean``.
    """
    train, pool, ratings, matches = run.train, run.pool, run.ratings, run.matches
    cooperative = run.cooperative
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
        common = {
            "role": role,
            "version": version,
            "env_steps": env_steps,
            "episode_return_mean": returns.iloc[-1] if len(returns) else np.nan,
        }
        if cooperative:
            rows[policy_id] = {**common, **_team_returns(matches, policy_id)}
            continue
        win_rate, episodes = _win_rate_vs_random(matches, policy_id)
        rows[policy_id] = {
            **common,
            # The newest rated version's latest row (older versions keep being re-rated as opponents).
            "elo": p_ratings[p_ratings.version == p_ratings.version.max()].elo.iloc[-1]
            if len(p_ratings) else np.nan,
            "win_rate_vs_random": win_rate,
            "random_episodes": episodes,
        }
        for name, score in _scores_vs_baselines(matches, policy_id).items():
            rows[policy_id][f"vs_{name}"] = score
    base = COOPERATIVE_SUMMARY_COLUMNS if cooperative else SUMMARY_COLUMNS
    extra = sorted({k for row in rows.values() for k in row} - set(base))
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[*base, *extra])
    frame.index.name = "policy_id"
    return frame


def _scores_vs_baselines(matches: pd.DataFrame, policy_id: str) -> dict[str, float]:
    """Score (wins + draws/2 over episodes) of the policy's newest evaluated version against each
    scripted baseline (columns ``vs_<name>``; the random baseline has its own columns)."""
    evals = matches[(matches.kind == "evaluation") & (matches.policy_id == policy_id)
                    & (matches.matchmaker == "baseline") & (matches.opponent_id != RANDOM_BASELINE)]
    if evals.empty:
        return {}
    evals = evals[evals.version == evals.version.max()]
    out = {}
    for name, group in evals.groupby("opponent_id"):
        episodes = int(group.episodes.sum())
        if episodes:
            out[str(name)] = float(group.wins.sum() + 0.5 * group.draws.sum()) / episodes
    return out


def _team_returns(matches: pd.DataFrame, policy_id: str) -> dict[str, float | int]:
    """A cooperative policy's newest evaluated version, at its latest generation: its team return in
    the evaluation episodes against the comparators (eval_return_mean over eval_episodes), and each
    comparator's return in the same seat on the same episodes (``<name>_return_mean``; random's is
    random_return_mean). Cross-play and communication checks are other kinds and stay out."""
    evals = matches[(matches.kind == "evaluation") & (matches.policy_id == policy_id)
                    & (matches.matchmaker.isin(["comparator", "baseline"]))]
    out: dict[str, float | int] = {"eval_return_mean": np.nan, "random_return_mean": np.nan, "eval_episodes": 0}
    if evals.empty:
        return out
    evals = evals[evals.version == evals.version.max()]
    evals = evals[evals.generation == evals.generation.max()]
    episodes = int(evals.episodes.sum())
    if not episodes:
        return out
    out["eval_return_mean"] = float((evals.return_mean * evals.episodes).sum()) / episodes
    out["eval_episodes"] = episodes
    for name, group in evals.groupby("opponent_id"):
        n = int(group.episodes.sum())
        if n:
            out[f"{name}_return_mean"] = float((group.opponent_return_mean * group.episodes).sum()) / n
    return out


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


# ---------------------------------------------------------------------------------------------
# Cooperative roles: cross-play and the communication check
# ---------------------------------------------------------------------------------------------

CROSSPLAY = "crossplay"
"""``matchmaker`` of the evaluation rows that pair a snapshot with partner snapshots (cross-play)."""
COMMUNICATION = "communication"
"""``matchmaker`` of the communication check rows (trained partners vs random partners)."""


def crossplay_matrix(run: Run, role: str | None = None) -> pd.DataFrame:
    """The cross-play matrix of a cooperative run: rows ``policy@version`` of `role` (default: the
    first role with cross-play rows), columns the partner line-up ``partner@version``, values the mean
    team return per agent over every cross-play episode of that pair (NaN: never paired).

    Built from the ``matches`` rows with ``matchmaker == 'crossplay'``; partners that never trained
    together appear off the diagonal of co-trained versions.
    """
    rows = run.matches[(run.matches.kind == "evaluation") & (run.matches.matchmaker == CROSSPLAY)]
    if role is None and len(rows):
        role = str(rows.role.iloc[0])
    rows = rows[rows.role == role]
    if rows.empty:
        return pd.DataFrame(dtype=float)
    label = rows.policy_id + "@" + rows.version.astype(str)
    partner = np.where(rows.opponent_version >= 0, rows.opponent_id + "@" + rows.opponent_version.astype(str),
                       rows.opponent_id)
    frame = pd.DataFrame({"row": label, "partner": partner, "weighted": rows.return_mean * rows.episodes,
                          "episodes": rows.episodes})
    sums = frame.groupby(["row", "partner"]).sum()
    matrix = (sums.weighted / sums.episodes).unstack("partner")

    def order(labels: pd.Index) -> list[str]:
        return sorted(labels, key=lambda s: (s.rsplit("@", 1)[0], int(s.rsplit("@", 1)[1]) if "@" in s else -1))

    return matrix.loc[order(matrix.index), order(matrix.columns)]


def communication_check(run: Run) -> pd.DataFrame:
    """Per evaluated snapshot of the communication roles: its return with the trained partners
    (``trained``), with random partners on the same seeds (``random``), ``gap`` = trained - random
    and the share of episodes the trained partners did better (``better``)."""
    rows = run.matches[(run.matches.kind == "evaluation") & (run.matches.matchmaker == COMMUNICATION)]
    out = pd.DataFrame({
        "policy_id": rows.policy_id, "version": rows.version, "role": rows.role, "episodes": rows.episodes,
        "trained": rows.return_mean, "random": rows.opponent_return_mean,
        "gap": rows.return_mean - rows.opponent_return_mean,
        "better": rows.wins / rows.episodes.where(rows.episodes > 0),
    })
    return out.reset_index(drop=True)
