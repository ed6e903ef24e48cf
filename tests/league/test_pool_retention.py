"""Rank 0's pool at scale: weights in a bounded cache, and the retention policy (pool.keep*)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from mpimarl.errors import WeightsDropped
from mpimarl.league.matchmaking import MATCHMAKER_NAMES, make_matchmaker
from mpimarl.league.payoff import PayoffTable
from mpimarl.league.pool import PolicyPool, Retention, Snapshot, SnapshotKey

SnapshotFactory = Callable[[str, int, str], Snapshot]


class _Store:
    """Stands in for the run file: every published snapshot's weights, with a count of reads."""

    def __init__(self) -> None:
        self.weights: dict[SnapshotKey, np.ndarray] = {}
        self.reads = 0

    def load(self, key: SnapshotKey) -> np.ndarray:
        self.reads += 1
        return self.weights[key].copy()


def _big(policy_id: str, version: int, role: str = "player", size: int = 1000) -> Snapshot:
    parent = SnapshotKey(policy_id, version - 1) if version else None
    return Snapshot(SnapshotKey(policy_id, version), role, parent, 1, version, float(version),
                    np.full(size, version, np.float32))


def _publish(pool: PolicyPool, store: _Store, snap: Snapshot) -> None:
    assert snap.weights is not None
    store.weights[snap.key] = snap.weights.copy()
    pool.add(snap)


def test_the_cache_bounds_the_weights_in_memory_and_reads_the_rest_back() -> None:
    store = _Store()
    pool = PolicyPool(store.load, cache_bytes=10 * 4000)  # ten snapshots of 1000 float32
    for v in range(100):
        _publish(pool, store, _big("player-0", v))
        assert pool.cache.bytes <= 10 * 4000
    assert len(pool) == 100 and len(pool.cache) == 10 and store.reads == 0
    for v in (0, 37, 99, 0):
        np.testing.assert_array_equal(pool.weights(SnapshotKey("player-0", v)), np.full(1000, v, np.float32))
    assert store.reads == 2  # 0 and 37 came from the store, 99 was cached, 0 is cached now
    assert pool.cache.bytes <= 10 * 4000
    assert pool.get(SnapshotKey("player-0", 5)).weights is None  # metadata only on the heap


def test_a_snapshot_from_another_store_is_read_back_from_that_store() -> None:
    """An exploit job's targets come from the run it exploits: once evicted, they are read from there,
    not from the job's own run file (which never held them)."""
    own, source = _Store(), _Store()
    pool = PolicyPool(own.load, cache_snapshots=2)
    for v in range(5):  # a target population of five snapshots, more than the cache holds
        snap = _big("player-0", v, size=10)
        source.weights[snap.key] = snap.weights.copy()
        pool.add(snap, source.load)
    _publish(pool, own, _big("exploiter-player-0", 1, size=10))
    for v in range(5):
        np.testing.assert_array_equal(pool.weights(SnapshotKey("player-0", v)), np.full(10, v, np.float32))
    assert source.reads >= 3 and own.reads == 0
    np.testing.assert_array_equal(pool.weights(SnapshotKey("exploiter-player-0", 1)), np.full(10, 1, np.float32))


def test_a_count_bound_and_no_store_means_everything_stays() -> None:
    store = _Store()
    pool = PolicyPool(store.load, cache_snapshots=3)
    for v in range(8):
        _publish(pool, store, _big("player-0", v, size=10))
    assert len(pool.cache) == 3
    unbounded = PolicyPool(cache_bytes=1)  # no loader: nothing may be evicted
    for v in range(8):
        unbounded.add(_big("player-0", v, size=10))
    assert len(unbounded.cache) == 8


def test_retention_keeps_the_latest_every_kth_and_anchors_and_drops_the_rest() -> None:
    store = _Store()
    pool = PolicyPool(store.load)
    retention = Retention(keep_latest=2, keep_every=5, keep=frozenset({SnapshotKey("player-0", 7)}))
    decisions: list[tuple[SnapshotKey, str]] = []
    for v in range(20):
        _publish(pool, store, _big("player-0", v, size=4))
        decisions += retention.apply(pool, "player-0")
    stored = [s.key.version for s in pool.snapshots()]
    assert stored == [0, 5, 7, 10, 15, 18, 19]
    assert len(pool) == 20 and SnapshotKey("player-0", 3) in pool  # metadata stays
    assert [k.version for k, _ in decisions] == list(range(18))  # each decided once, oldest first
    assert dict((k.version, r) for k, r in decisions)[7] == "anchor"
    assert dict((k.version, r) for k, r in decisions)[10] == "every"
    with pytest.raises(WeightsDropped, match=r"player-0@3 were dropped by the retention policy.*pool.keep_latest"):
        pool.weights(SnapshotKey("player-0", 3))
    assert pool.latest("player-0").key.version == 19


def test_retention_by_matchmaker_weight_and_pinned_snapshots_wait() -> None:
    store = _Store()
    pool = PolicyPool(store.load)
    retention = Retention(keep_latest=1, keep_weight_above=0.3)
    favourite = SnapshotKey("player-0", 1)

    def meta(role: str) -> dict[SnapshotKey, float]:
        return {favourite: 0.5}

    for v in range(3):
        _publish(pool, store, _big("player-0", v, size=4))
        retention.apply(pool, "player-0", meta, pinned={SnapshotKey("player-0", 0)} if v < 2 else set())
    assert [s.key.version for s in pool.snapshots()] == [1, 2]  # 0 waited while pinned, then went
    assert pool.get(favourite).kept == "weight"


def test_no_matchmaker_ever_draws_a_snapshot_without_weights() -> None:
    """Every registered strategy, many draws, a pool where most snapshots lost their weights."""
    rng = np.random.default_rng(0)
    for name in MATCHMAKER_NAMES:
        store = _Store()
        pool = PolicyPool(store.load)
        retention = Retention(keep_latest=2, keep_every=4)
        payoff = PayoffTable()
        mm = make_matchmaker(name)
        for v in range(12):
            for pid in ("player-0", "player-1"):
                snap = _big(pid, v, size=4)
                _publish(pool, store, snap)
                mm.on_publish(pool.get(snap.key))
                retention.apply(pool, pid)
        dropped = {s.key for s in pool.all_snapshots() if not s.stored}
        assert len(dropped) == 2 * 7, name
        for key in dropped:  # the matchmaker has results against them: they must still not be drawn
            mm.record_result(SnapshotKey("player-0", 11), key, 0.0)
        for _ in range(50):
            for lineup in mm.lineups(pool, SnapshotKey("player-0", 11), "player", ["player"], 4, rng, payoff):
                assert not set(lineup) & dropped, (name, lineup)
        assert not set(mm.meta_strategy(pool, "player", payoff)) & dropped, name


def test_the_latest_snapshot_cannot_be_dropped_and_keep_latest_0_is_refused() -> None:
    pool = PolicyPool()
    pool.add(_big("player-0", 0, size=4))
    with pytest.raises(ValueError, match="latest snapshot"):
        pool.drop_weights(SnapshotKey("player-0", 0))
    with pytest.raises(ValueError, match="nothing to draw"):
        Retention(keep_latest=0)


def test_checkpoint_state_keeps_which_weights_were_dropped_and_kept() -> None:
    store = _Store()
    pool = PolicyPool(store.load, cache_snapshots=2)
    retention = Retention(keep_latest=1, keep_every=2)
    for v in range(6):
        _publish(pool, store, _big("player-0", v, size=4))
        retention.apply(pool, "player-0")
    state = json.loads(json.dumps(pool.to_state()))
    back = PolicyPool.from_state(state, store.load, cache_snapshots=2)
    assert [s.key.version for s in back.snapshots()] == [0, 2, 4, 5]
    assert back.get(SnapshotKey("player-0", 2)).kept == "every"
    assert len(back.cache) == 2  # only the newest were read at once
    np.testing.assert_array_equal(back.weights(SnapshotKey("player-0", 0)), np.zeros(4, np.float32))
    assert back.to_state() == pool.to_state()


def test_a_resume_from_an_older_checkpoint_sees_weights_dropped_since_as_metadata() -> None:
    store = _Store()
    pool = PolicyPool(store.load)
    for v in range(4):
        _publish(pool, store, _big("player-0", v, size=4))
    state = pool.to_state()  # every weight stored at this checkpoint
    gone = SnapshotKey("player-0", 2)

    def load(key: SnapshotKey) -> np.ndarray:
        if key == gone:  # the run dropped it after the checkpoint, then was killed
            raise WeightsDropped(f"the weights of snapshot {key} were dropped")
        return store.load(key)

    back = PolicyPool.from_state(state, load)
    assert [s.key.version for s in back.snapshots()] == [0, 1, 3] and gone in back
