"""The policy pool: every published snapshot of every policy, keyed by (policy id, version).

The server owns one `PolicyPool`. Trainers publish snapshots into it; the matchmaker and the
evaluator read from it. Versions of one policy only grow, and a policy keeps its role for life.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RANDOM_POLICY_ID = "random"
"""Reserved policy id of the uniform-random baseline; never stored in a pool."""


def is_baseline_id(policy_id: str) -> bool:
    """True for a fixed baseline's id (the random baseline or a scripted policy's name).

    Trained policies are always named '<role>-<k>' and baseline names are identifiers without '-',
    so the two can never collide.
    """
    return "-" not in policy_id


@dataclass(frozen=True, order=True)
class SnapshotKey:
    """Identifies one published snapshot: a policy id and a version of that policy."""

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


@dataclass
class Snapshot:
    """One published policy snapshot: its key, role, lineage, provenance and flat weights.

    `parent` is the snapshot this one was trained from (None for a version 0 initialisation),
    `rank` the MPI rank that published it, `env_steps` the trainer's environment steps at publish
    time, `time` seconds since the run started, and `weights` one flat float32 buffer.
    """

    key: SnapshotKey
    role: str
    parent: SnapshotKey | None
    rank: int
    env_steps: int
    time: float
    weights: np.ndarray = field(repr=False)


class PolicyPool:
    """Every published snapshot of every policy, in publish order.

    Rules enforced by `add`: a key is published once, the versions of one policy strictly
    increase, a policy keeps the role of its first snapshot, weights are a 1-D float32 array,
    and the random baseline's id is reserved.
    """

    def __init__(self) -> None:
        self._snapshots: dict[SnapshotKey, Snapshot] = {}  # insertion order = publish order
        self._latest: dict[str, SnapshotKey] = {}  # insertion order = first-publish order
        self._role_of: dict[str, str] = {}

    def add(self, snapshot: Snapshot) -> None:
        """Publish a snapshot; ValueError naming the key if it breaks one of the pool's rules."""
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
        self._snapshots[key] = snapshot
        self._latest[key.policy_id] = key
        self._role_of.setdefault(key.policy_id, snapshot.role)

    def get(self, key: SnapshotKey) -> Snapshot:
        """The snapshot with this key; KeyError naming the key if it was never published."""
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
        """Snapshots in publish order, only those of `role` when given."""
        return [s for s in self._snapshots.values() if role is None or s.role == role]

    def __contains__(self, key: object) -> bool:
        return key in self._snapshots

    def __len__(self) -> int:
        return len(self._snapshots)

    def __iter__(self) -> Iterator[Snapshot]:
        return iter(list(self._snapshots.values()))

    # ---- checkpoint state ------------------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        """Every snapshot's metadata in publish order, as JSON data; the weights are left out
        (the run file stores them, `from_state` asks for them)."""
        return [{"policy_id": s.key.policy_id, "version": s.key.version, "role": s.role,
                 "parent": None if s.parent is None else [s.parent.policy_id, s.parent.version],
                 "rank": s.rank, "env_steps": s.env_steps, "time": s.time} for s in self._snapshots.values()]

    @classmethod
    def from_state(cls, state: list[dict[str, Any]], weights: Callable[[SnapshotKey], np.ndarray]) -> PolicyPool:
        """The pool `to_state` described, each snapshot's weights read with `weights(key)`."""
        pool = cls()
        for item in state:
            key = SnapshotKey(str(item["policy_id"]), int(item["version"]))
            parent = item["parent"]
            pool.add(Snapshot(key, str(item["role"]),
                              None if parent is None else SnapshotKey(str(parent[0]), int(parent[1])),
                              int(item["rank"]), int(item["env_steps"]), float(item["time"]), weights(key)))
        return pool
