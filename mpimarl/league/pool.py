"""The policy pool: every published snapshot of every policy, keyed by (policy id, version).

The server owns one `PolicyPool`. Trainers publish snapshots into it; the matchmaker and the
evaluator read from it. Versions of one policy only grow, and a policy keeps its role for life.

At cluster scale the pool outgrows rank 0's memory, so it keeps the metadata of every snapshot but
weights only in a bounded least-recently-used cache (:class:`WeightCache`); the others are read back
with the pool's `load` function (the run file: the recorder stores every snapshot it is given). A
retention policy (:class:`Retention`) may drop the weights of a snapshot for good: it stays in the
pool as metadata (ratings, lineage) but is no longer drawable. `snapshots()`, `policy_ids()` and
`latest()` see only drawable snapshots, so no matchmaker or evaluation plan can seat one without
weights; `all_snapshots()` and `in` see every snapshot ever published.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mpimarl.errors import WeightsDropped

RANDOM_POLICY_ID = "random"
"""Reserved policy id of the uniform-random baseline; never stored in a pool."""


def is_baseline_id(policy_id: str) -> bool:
    """True for a fixed baseline's id (the random baseline or a scripted policy's name).

    Trained policies are always named '<role>-<k>' and baseline names are identifiers without '-',
    so the two can never collide.
    """
    return "-" not in policy_id


@dataclass(frozen=True, order=True, slots=True)
class SnapshotKey:
    """Identifies one published snapshot: a policy id and a version of that policy (slots: rank 0 keeps
    one or two per snapshot ever published)."""

    policy_id: str
    version: int

    def __str__(self) -> str:
        return f"{self.policy_id}@{self.version}"


RANDOM_KEY = SnapshotKey(RANDOM_POLICY_ID, 0)
"""The uniform-random baseline. It is not in any pool; ratings use it as a fixed anchor."""


def baseline_key(name: str) -> SnapshotKey:
    """The key of the fixed baseline `name` (version 0: baselines never change)."""
    if not is_baseline_id(name):
        raise ValueError(f"baseline name {name!r} must not contain '-' (reserved for trained policies)")
    return SnapshotKey(name, 0)


@dataclass(slots=True)
class Snapshot:
    """One published policy snapshot: its key, role, lineage, provenance and flat weights.

    `parent` is the snapshot this one was trained from (None for a version 0 initialisation),
    `rank` the MPI rank that published it, `env_steps` the trainer's environment steps at publish
    time, `time` seconds since the run started, and `weights` one flat float32 buffer. The pool keeps
    its snapshots without weights (`weights` None; :meth:`PolicyPool.weights` reads them) and with
    `stored` False once the retention policy dropped the weights.
    """

    key: SnapshotKey
    role: str
    parent: SnapshotKey | None
    rank: int
    env_steps: int
    time: float
    weights: np.ndarray | None = field(repr=False)
    stored: bool = True
    size: int = 0  # float32 values of the weights (set by the pool)
    kept: str = ""  # why the retention policy keeps the weights forever ('' while undecided)


WeightLoader = Callable[[SnapshotKey], np.ndarray]
"""Reads a stored snapshot's flat float32 weights back (the run file, on rank 0)."""


class WeightCache:
    """Snapshot weights kept in memory, least recently used first out, bounded in bytes and count.

    `max_bytes` / `max_items` None mean no bound. Without a loader to read evicted weights back the
    cache must not evict (the pool passes no bounds then).
    """

    def __init__(self, max_bytes: int | None = None, max_items: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[SnapshotKey, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: SnapshotKey) -> np.ndarray | None:
        """The cached weights (now the most recently used), or None."""
        weights = self._items.get(key)
        if weights is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return weights

    def put(self, key: SnapshotKey, weights: np.ndarray) -> None:
        """Keep `weights` as the most recently used; evict the least recently used beyond the bounds
        (the newest entry always stays, however large)."""
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._items[key] = weights
        self.bytes += weights.nbytes
        while len(self._items) > 1 and (
            (self.max_bytes is not None and self.bytes > self.max_bytes)
            or (self.max_items is not None and len(self._items) > self.max_items)
        ):
            _, evicted = self._items.popitem(last=False)
            self.bytes -= evicted.nbytes

    def discard(self, key: SnapshotKey) -> None:
        """Forget `key` (its weights were dropped)."""
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class PolicyPool:
    """Every published snapshot of every policy, in publish order.

    Rules enforced by `add`: a key is published once, the versions of one policy strictly
    increase, a policy keeps the role of its first snapshot, weights are a 1-D float32 array,
    and the random baseline's id is reserved.

    `load` reads a snapshot's weights back once the cache evicted them; without it every snapshot's
    weights stay in memory (the cache bounds then do not apply). `cache_bytes` / `cache_snapshots`
    bound the weights kept in memory.
    """

    def __init__(self, load: WeightLoader | None = None, cache_bytes: int | None = None,
                 cache_snapshots: int | None = None) -> None:
        self._snapshots: dict[SnapshotKey, Snapshot] = {}  # insertion order = publish order
        self._latest: dict[str, SnapshotKey] = {}  # insertion order = first-publish order
        self._role_of: dict[str, str] = {}
        self._load = load
        bounded = load is not None
        self.cache = WeightCache(cache_bytes if bounded else None, cache_snapshots if bounded else None)
        self.dropped_count = 0
        self._versions: dict[str, list[SnapshotKey]] = {}  # policy -> every key, oldest first
        # The drawable snapshots (weights stored), in publish order, overall and per role: what the
        # matchmakers and evaluation plans read at every request. Kept as indexes so that a request
        # costs what the drawable part of the pool holds, not every snapshot ever published.
        self._drawable: dict[SnapshotKey, Snapshot] = {}
        self._drawable_by_role: dict[str, dict[SnapshotKey, Snapshot]] = {}
        self._sources: dict[SnapshotKey, WeightLoader] = {}  # snapshots whose weights live elsewhere

    def add(self, snapshot: Snapshot, load: WeightLoader | None = None) -> None:
        """Publish a snapshot; ValueError naming the key if it breaks one of the pool's rules.

        `load`: where this snapshot's weights are read back once the cache evicted them, instead of
        the pool's own loader (an exploit job's targets live in the run file it exploits, not in the
        job's own).
        """
        key = snapshot.key
        if key.policy_id == RANDOM_POLICY_ID:
            raise ValueError(
                f"cannot publish {key}: policy id {RANDOM_POLICY_ID!r} is reserved for the "
                "uniform-random baseline"
            )
        if is_baseline_id(key.policy_id):
            raise ValueError(
                f"cannot publish {key}: trained policy ids look like '<role>-<k>'; ids without '-' "
                "are reserved for fixed baselines"
            )
        if key in self._snapshots:
            raise ValueError(f"snapshot {key} is already in the pool")
        latest = self._latest.get(key.policy_id)
        if latest is not None and key.version <= latest.version:
            raise ValueError(
                f"cannot publish {key}: versions of {key.policy_id!r} must increase, "
                f"latest is {latest}"
            )
        role = self._role_of.get(key.policy_id)
        if role is not None and snapshot.role != role:
            raise ValueError(
                f"cannot publish {key} with role {snapshot.role!r}: earlier versions of "
                f"{key.policy_id!r} have role {role!r}"
            )
        weights = snapshot.weights
        if not isinstance(weights, np.ndarray) or weights.dtype != np.float32 or weights.ndim != 1:
            got = (
                f"dtype={weights.dtype}, shape={weights.shape}"
                if isinstance(weights, np.ndarray)
                else type(weights).__name__
            )
            raise ValueError(f"snapshot {key} weights must be a 1-D float32 array, got {got}")
        meta = replace(snapshot, key=self._shared_key(key), role=self._role_of.get(key.policy_id, snapshot.role),
                       parent=None if snapshot.parent is None else self._shared_key(snapshot.parent),
                       weights=None, stored=True, size=int(weights.size))
        key = meta.key
        self._snapshots[key] = meta
        self._latest[key.policy_id] = key
        self._role_of.setdefault(key.policy_id, snapshot.role)
        self._versions.setdefault(key.policy_id, []).append(key)
        self._index_drawable(meta)
        if load is not None:
            self._sources[key] = load
        self.cache.put(key, weights)

    def _shared_key(self, key: SnapshotKey) -> SnapshotKey:
        """`key` as the pool's own key object when it has one, else with the policy id string the pool
        already holds: the metadata of every snapshot ever published stays in memory for the whole run,
        so it does not repeat the same strings and keys (benchmarks/results/pool_scale_growth.md)."""
        snap = self._snapshots.get(key)
        if snap is not None:
            return snap.key
        latest = self._latest.get(key.policy_id)
        if latest is not None and latest.policy_id is not key.policy_id:
            return SnapshotKey(latest.policy_id, key.version)
        return key

    def _index_drawable(self, snap: Snapshot) -> None:
        self._drawable[snap.key] = snap
        self._drawable_by_role.setdefault(snap.role, {})[snap.key] = snap

    def weights(self, key: SnapshotKey) -> np.ndarray:
        """A snapshot's flat float32 weights, from the cache or read back with `load`.

        KeyError naming the key if it was never published; WeightsDropped (a KeyError) naming it
        and the setting if the retention policy dropped its weights.
        """
        snap = self.get(key)
        if not snap.stored:
            raise WeightsDropped(f"the weights of snapshot {key} were dropped by the retention policy "
                                 "(pool.keep_latest and the other pool.keep* settings); only its metadata "
                                 "and ratings remain")
        weights = self.cache.get(key)
        if weights is None:
            load = self._sources.get(snap.key, self._load)
            if load is None:  # pragma: no cover - add() always caches without a loader
                raise KeyError(f"snapshot {key}: weights not in memory and no store to read them from")
            weights = load(snap.key)
            self.cache.put(key, weights)
        return weights

    def drop_weights(self, key: SnapshotKey) -> None:
        """The retention policy dropped `key`'s weights: it stays as metadata, never drawn again.

        ValueError for a policy's latest snapshot (its trainer and the matchmakers need it).
        """
        snap = self.get(key)
        if not snap.stored:
            return
        if self._latest[key.policy_id] == key:
            raise ValueError(f"cannot drop the weights of {key}: it is the latest snapshot of {key.policy_id!r}")
        snap.stored = False
        self.cache.discard(key)
        self.dropped_count += 1
        del self._drawable[key]
        del self._drawable_by_role[snap.role][key]

    def drawable(self, key: SnapshotKey) -> bool:
        """Whether `key` is in the pool with its weights (a matchmaker may seat it)."""
        snap = self._snapshots.get(key)
        return snap is not None and snap.stored

    def versions(self, policy_id: str) -> list[SnapshotKey]:
        """Every published key of `policy_id` (weights dropped or not), oldest first."""
        return list(self._versions.get(policy_id, ()))

    def older_versions(self, policy_id: str, skip: int) -> Iterator[SnapshotKey]:
        """The keys of `policy_id` older than its newest `skip`, newest first, without copying the
        policy's history (the retention policy walks only as far back as it has something to decide)."""
        keys = self._versions.get(policy_id, [])
        for i in range(len(keys) - 1 - skip, -1, -1):
            yield keys[i]

    def get(self, key: SnapshotKey) -> Snapshot:
        """The snapshot (metadata) with this key; KeyError naming the key if it was never published."""
        try:
            return self._snapshots[key]
        except KeyError:
            raise KeyError(f"snapshot {key} is not in the pool") from None

    def latest(self, policy_id: str) -> Snapshot:
        """The newest snapshot of a policy; KeyError naming the policy if it has none."""
        try:
            return self._snapshots[self._latest[policy_id]]
        except KeyError:
            raise KeyError(f"policy {policy_id!r} has no snapshot in the pool") from None

    def role_of(self, policy_id: str) -> str:
        """The role of a policy; KeyError naming the policy if it has no snapshot."""
        try:
            return self._role_of[policy_id]
        except KeyError:
            raise KeyError(f"policy {policy_id!r} has no snapshot in the pool") from None

    def policy_ids(self, role: str | None = None) -> list[str]:
        """Policy ids in first-publish order, only those of `role` when given."""
        return [p for p, r in self._role_of.items() if role is None or r == role]

    def snapshots(self, role: str | None = None) -> list[Snapshot]:
        """The drawable snapshots (weights stored) in publish order, only those of `role` when given
        (from the drawable index: the cost follows what can be drawn, not what was ever published)."""
        if role is None:
            return list(self._drawable.values())
        return list(self._drawable_by_role.get(role, {}).values())

    def drawable_count(self, role: str | None = None) -> int:
        """How many snapshots (of `role`, when given) can be drawn: their weights are stored."""
        return len(self._drawable if role is None else self._drawable_by_role.get(role, {}))

    def all_snapshots(self, role: str | None = None) -> list[Snapshot]:
        """Every snapshot ever published, weights dropped or not, in publish order."""
        return [s for s in self._snapshots.values() if role is None or s.role == role]

    def __contains__(self, key: object) -> bool:
        """Whether the key was ever published (its weights may have been dropped since)."""
        return key in self._snapshots

    def __len__(self) -> int:
        return len(self._snapshots)

    def __iter__(self) -> Iterator[Snapshot]:
        """The drawable snapshots, as :meth:`snapshots`."""
        return iter(self.snapshots())

    # ---- checkpoint state ------------------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        """Every snapshot's metadata in publish order, as JSON data; the weights are left out
        (the run file stores them, `from_state` asks for them)."""
        return [{"policy_id": s.key.policy_id, "version": s.key.version, "role": s.role,
                 "parent": None if s.parent is None else [s.parent.policy_id, s.parent.version],
                 "rank": s.rank, "env_steps": s.env_steps, "time": s.time, "size": s.size,
                 **({} if s.stored else {"stored": False}), **({"kept": s.kept} if s.kept else {})}
                for s in self._snapshots.values()]

    @classmethod
    def from_state(cls, state: list[dict[str, Any]], weights: WeightLoader, cache_bytes: int | None = None,
                   cache_snapshots: int | None = None) -> PolicyPool:
        """The pool `to_state` described; `weights(key)` reads a snapshot's weights (at once for the ones
        the cache keeps, later for the others)."""
        pool = cls(weights, cache_bytes, cache_snapshots)
        for item in state:
            key = SnapshotKey(str(item["policy_id"]), int(item["version"]))
            parent = item["parent"]
            stored = bool(item.get("stored", True))
            meta = Snapshot(key, str(item["role"]),
                            None if parent is None else SnapshotKey(str(parent[0]), int(parent[1])),
                            int(item["rank"]), int(item["env_steps"]), float(item["time"]), None,
                            kept=str(item.get("kept", "")), size=int(item.get("size", 0)))
            pool._restore(meta, stored)
        for snap in reversed(pool.snapshots()):  # warm the cache with the newest (most used) weights
            before = len(pool.cache)
            try:
                pool.weights(snap.key)
            except WeightsDropped:
                # Dropped after the checkpoint was taken (a resume from an older one): metadata only now.
                pool.drop_weights(snap.key)
                continue
            if len(pool.cache) <= before:
                break  # it evicted one: the cache is full
        return pool

    def _restore(self, meta: Snapshot, stored: bool) -> None:
        """Add a checkpointed snapshot's metadata (its weights are read when needed)."""
        key = meta.key
        snap = replace(meta, weights=None, stored=stored)
        self._snapshots[key] = snap
        self._latest[key.policy_id] = key
        self._role_of.setdefault(key.policy_id, meta.role)
        self._versions.setdefault(key.policy_id, []).append(key)
        if stored:
            self._index_drawable(snap)
        else:
            self.dropped_count += 1


# ---- retention ------------------------------------------------------------------------------------


@dataclass
class Retention:
    """Which snapshots keep their weights (the `pool.keep*` settings; docs/pool.md).

    A snapshot keeps its weights while it is among the latest `keep_latest` of its policy. When it
    leaves that window it keeps them forever if it is an anchor (`keep`), if its version is a
    multiple of `keep_every`, or if its weight in the matchmaker's distribution is above
    `keep_weight_above`; otherwise its weights are dropped (metadata and ratings stay). Each
    snapshot is decided once; the decision is part of the pool (and so of its checkpoint state).
    """

    keep_latest: int
    keep_every: int | None = None
    keep_weight_above: float | None = None
    keep: frozenset[SnapshotKey] = frozenset()
    deferred: set[SnapshotKey] = field(default_factory=set)  # pinned when due: decided at a later publish

    def __post_init__(self) -> None:
        if self.keep_latest < 1:
            raise ValueError(f"keep_latest {self.keep_latest} would leave the matchmaker nothing to draw; "
                             "at least 1")

    def decide(self, key: SnapshotKey, meta_weight: float | None) -> str | None:
        """Why `key` keeps its weights forever ('anchor', 'every', 'weight'), or None: drop them."""
        if key in self.keep:
            return "anchor"
        if self.keep_every is not None and key.version % self.keep_every == 0:
            return "every"
        if self.keep_weight_above is not None and meta_weight is not None and meta_weight > self.keep_weight_above:
            return "weight"
        return None

    def apply(self, pool: PolicyPool, policy_id: str,
              meta_weights: Callable[[str], dict[SnapshotKey, float]] | None = None,
              pinned: Collection[SnapshotKey] = ()) -> list[tuple[SnapshotKey, str]]:
        """After a publish of `policy_id`: decide the snapshots that left its latest `keep_latest`.

        Drops the weights in `pool` of those not kept; returns (key, 'dropped' or the reason it is
        kept) per decision, oldest first. `meta_weights(role)` is the matchmaker's distribution over
        the role's drawable snapshots (asked only when keep_weight_above is set and a decision is due).
        `pinned` snapshots (a pending evaluation will seat them) are decided at a later publish.
        """
        due: list[SnapshotKey] = [k for k in self.deferred if k.policy_id == policy_id]
        for key in pool.older_versions(policy_id, self.keep_latest):  # newest first
            snap = pool.get(key)
            if not snap.stored or snap.kept:
                break  # decisions are made oldest first: everything older is decided (or deferred)
            due.append(key)
        out: list[tuple[SnapshotKey, str]] = []
        weights: dict[SnapshotKey, float] | None = None
        for key in sorted(set(due)):
            if key in pinned:
                self.deferred.add(key)
                continue
            self.deferred.discard(key)
            if weights is None and self.keep_weight_above is not None and meta_weights is not None:
                weights = meta_weights(pool.role_of(policy_id))
            reason = self.decide(key, None if weights is None else weights.get(key, 0.0))
            if reason is None:
                pool.drop_weights(key)
                out.append((key, "dropped"))
            else:
                pool.get(key).kept = reason
                out.append((key, reason))
        return out

    @staticmethod
    def from_config(keep_latest: int | None, keep_every: int | None, keep_weight_above: float | None,
                    keep: Sequence[tuple[str, int]]) -> Retention | None:
        """The retention policy of the `pool` config section; None when it is off (keep_latest None)."""
        if keep_latest is None:
            return None
        return Retention(keep_latest, keep_every, keep_weight_above,
                         frozenset(SnapshotKey(p, v) for p, v in keep))
