"""Elo ratings of pool snapshots, with fixed anchors (e.g. the random baseline at 1000).

A snapshot that has never been rated has the initial rating, unless `add_child` seeded it from
its parent: a new version starts where the version it was trained from stood.
"""

from __future__ import annotations

import math

from mpimarl.league.pool import SnapshotKey


class EloTable:
    """Elo ratings and game counts per snapshot key.

    `update(a, b, score_a)` moves both ratings by `k * (score - expected)`; a fixed key (an
    anchor) keeps its rating, so its opponent alone moves. Games are counted for every key,
    anchors included.
    """

    def __init__(self, k: float = 32.0, initial: float = 1000.0) -> None:
        if not (math.isfinite(k) and k > 0):
            raise ValueError(f"Elo k must be a positive finite number, got {k!r}")
        if not math.isfinite(initial):
            raise ValueError(f"initial Elo rating must be finite, got {initial!r}")
        self.k = float(k)
        self.initial = float(initial)
        self._rating: dict[SnapshotKey, float] = {}
        self._games: dict[SnapshotKey, int] = {}
        self._fixed: set[SnapshotKey] = set()

    # ---- queries ------------------------------------------------------------------------------

    def rating(self, key: SnapshotKey) -> float:
        """The key's rating; the initial rating for a key never seen."""
        return self._rating.get(key, self.initial)

    def games(self, key: SnapshotKey) -> int:
        """How many rated games the key has played."""
        return self._games.get(key, 0)

    def is_fixed(self, key: SnapshotKey) -> bool:
        """Whether the key is an anchor whose rating never changes."""
        return key in self._fixed

    def __contains__(self, key: object) -> bool:
        return key in self._rating

    def expected(self, a: SnapshotKey, b: SnapshotKey) -> float:
        """Expected score of `a` against `b`: 1 / (1 + 10^((R_b - R_a) / 400))."""
        return 1.0 / (1.0 + 10.0 ** ((self.rating(b) - self.rating(a)) / 400.0))

    def items(self) -> list[tuple[SnapshotKey, float, int]]:
        """(key, rating, games) for every key the table knows, sorted by key."""
        return [(key, self._rating[key], self.games(key)) for key in sorted(self._rating)]

    # ---- registration -------------------------------------------------------------------------

    def fix(self, key: SnapshotKey, rating: float) -> None:
        """Make `key` an anchor at `rating`; later updates leave its rating unchanged."""
        if not math.isfinite(rating):
            raise ValueError(f"anchor rating of {key} must be finite, got {rating!r}")
        self._rating[key] = float(rating)
        self._fixed.add(key)

    def add_child(self, child: SnapshotKey, parent: SnapshotKey | None) -> float:
        """Register a new snapshot at its parent's rating (initial if the parent is unknown).

        Returns the child's starting rating. ValueError if the child is already in the table,
        since re-seeding would erase its record.
        """
        if child in self._rating:
            raise ValueError(f"snapshot {child} already has an Elo rating")
        start = self._rating.get(parent, self.initial) if parent is not None else self.initial
        self._rating[child] = start
        return start

    # ---- updates ------------------------------------------------------------------------------

    def update(self, a: SnapshotKey, b: SnapshotKey, score_a: float) -> None:
        """Rate one game of `a` against `b`; `score_a` is 1 (a won), 0.5 (draw) or 0 (a lost).

        Any score in [0, 1] is accepted; ValueError outside it or when a snapshot meets itself.
        """
        if not (0.0 <= score_a <= 1.0):  # also rejects NaN
            raise ValueError(f"score of {a} against {b} must be in [0, 1], got {score_a!r}")
        if a == b:
            raise ValueError(f"cannot rate a game of {a} against itself")
        delta = self.k * (score_a - self.expected(a, b))
        for key, change in ((a, delta), (b, -delta)):
            self._rating[key] = self.rating(key) + (0.0 if key in self._fixed else change)
            self._games[key] = self.games(key) + 1

    def update_many(
        self, a: SnapshotKey, b: SnapshotKey, wins: int, draws: int, losses: int
    ) -> None:
        """Rate a batch of games of `a` against `b` (counts from `a`'s side), one at a time.

        Sequential Elo depends on order, so the games are interleaved round-robin
        (win, draw, loss, win, ...) until each count is used up: deterministic, and a batch of
        mixed results does not drift as it would if all wins came before all losses.
        """
        for name, count in (("wins", wins), ("draws", draws), ("losses", losses)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(
                    f"{name} of {a} against {b} must be a non-negative int, got {count!r}"
                )
        remaining = {1.0: wins, 0.5: draws, 0.0: losses}
        while any(remaining.values()):
            for score in (1.0, 0.5, 0.0):
                if remaining[score]:
                    self.update(a, b, score)
                    remaining[score] -= 1
