"""Pools shared by the league tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mpimarl.league.pool import PolicyPool, Snapshot, SnapshotKey

PoolFactory = Callable[[list[tuple[str, str, int]]], PolicyPool]
SnapshotFactory = Callable[[str, int, str], Snapshot]


def _make_snapshot(policy_id: str, version: int, role: str) -> Snapshot:
    """A small snapshot whose weights encode its version; parent is the previous version."""
    parent = SnapshotKey(policy_id, version - 1) if version > 0 else None
    return Snapshot(
        key=SnapshotKey(policy_id, version),
        role=role,
        parent=parent,
        rank=1,
        env_steps=1000 * version,
        time=float(version),
        weights=np.full(4, version, dtype=np.float32),
    )


@pytest.fixture
def make_snapshot() -> SnapshotFactory:
    """`make_snapshot(policy_id, version, role)`: a small snapshot whose parent is version - 1."""
    return _make_snapshot


@pytest.fixture
def pool_factory() -> PoolFactory:
    """Build a pool from (policy_id, role, number of versions) triples, published round-robin so
    that publish order interleaves policies as a running league would."""

    def build(spec: list[tuple[str, str, int]]) -> PolicyPool:
        pool = PolicyPool()
        for version in range(max(count for _, _, count in spec)):
            for policy_id, role, count in spec:
                if version < count:
                    pool.add(_make_snapshot(policy_id, version, role))
        return pool

    return build
