"""PolicyPool: publish order, lookups and the rules `add` enforces."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mpimarl.league.pool import RANDOM_KEY, PolicyPool, Snapshot, SnapshotKey

SnapshotFactory = Callable[[str, int, str], Snapshot]


def test_key_str_and_order() -> None:
    assert str(SnapshotKey("player-0", 3)) == "player-0@3"
    assert str(RANDOM_KEY) == "random@0"
    keys = [SnapshotKey("b", 0), SnapshotKey("a", 2), SnapshotKey("a", 10)]
    assert sorted(keys) == [SnapshotKey("a", 2), SnapshotKey("a", 10), SnapshotKey("b", 0)]


def test_publish_order_lookups_and_roles(make_snapshot: SnapshotFactory) -> None:
    pool = PolicyPool()
    pool.add(make_snapshot("prey-0", 0, "prey"))
    pool.add(make_snapshot("predator-0", 0, "predator"))
    pool.add(make_snapshot("prey-0", 1, "prey"))
    pool.add(make_snapshot("prey-1", 0, "prey"))
    pool.add(make_snapshot("prey-0", 5, "prey"))  # versions may skip, they only have to grow

    assert len(pool) == 5
    assert pool.policy_ids() == ["prey-0", "predator-0", "prey-1"]
    assert pool.policy_ids("prey") == ["prey-0", "prey-1"]
    assert pool.policy_ids("speaker") == []
    assert [str(s.key) for s in pool.snapshots("prey")] == [
        "prey-0@0",
        "prey-0@1",
        "prey-1@0",
        "prey-0@5",
    ]
    assert [str(s.key) for s in pool.snapshots()][:2] == ["prey-0@0", "predator-0@0"]
    assert pool.latest("prey-0").key == SnapshotKey("prey-0", 5)
    assert pool.role_of("predator-0") == "predator"
    got = pool.get(SnapshotKey("prey-0", 1))
    assert got.parent == SnapshotKey("prey-0", 0)
    np.testing.assert_array_equal(pool.weights(got.key), np.full(4, 1, dtype=np.float32))
    assert SnapshotKey("prey-0", 1) in pool
    assert SnapshotKey("prey-0", 2) not in pool
    assert RANDOM_KEY not in pool


def test_unknown_lookups_name_what_is_missing(make_snapshot: SnapshotFactory) -> None:
    pool = PolicyPool()
    pool.add(make_snapshot("player-0", 0, "player"))
    with pytest.raises(KeyError, match="player-0@7"):
        pool.get(SnapshotKey("player-0", 7))
    with pytest.raises(KeyError, match="player-9"):
        pool.latest("player-9")
    with pytest.raises(KeyError, match="player-9"):
        pool.role_of("player-9")


def test_add_rejects_duplicates_old_versions_and_role_changes(
    make_snapshot: SnapshotFactory,
) -> None:
    pool = PolicyPool()
    pool.add(make_snapshot("player-0", 0, "player"))
    pool.add(make_snapshot("player-0", 2, "player"))
    with pytest.raises(ValueError, match="player-0@2 is already"):
        pool.add(make_snapshot("player-0", 2, "player"))
    with pytest.raises(ValueError, match="must increase"):
        pool.add(make_snapshot("player-0", 1, "player"))
    with pytest.raises(ValueError, match="role 'player'"):
        pool.add(make_snapshot("player-0", 3, "speaker"))
    assert len(pool) == 2 and pool.latest("player-0").key.version == 2  # nothing half-added


def test_add_rejects_bad_weights_and_the_reserved_random_id(make_snapshot: SnapshotFactory) -> None:
    pool = PolicyPool()
    bad64 = make_snapshot("player-0", 0, "player")
    bad64.weights = np.zeros(4, dtype=np.float64)
    with pytest.raises(ValueError, match="float32"):
        pool.add(bad64)
    bad2d = make_snapshot("player-0", 0, "player")
    bad2d.weights = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="1-D"):
        pool.add(bad2d)
    with pytest.raises(ValueError, match="reserved"):
        pool.add(make_snapshot("random", 0, "player"))
    assert len(pool) == 0
