"""Matchmaking: which pool snapshots fill the other seats of a learner's next matches.

A match has seats, each with a role. The learner takes one seat; a matchmaker returns, for each of
the `n` matches asked for, a `Lineup`: one snapshot key per OTHER seat, in seat order.

Strategies:
- `latest` (naive self-play): own-role seats get the learner's own latest snapshot, other-role seats
  the latest snapshot of a policy of that role chosen uniformly.
- `uniform` (fictitious self-play): every seat samples uniformly over all snapshots of its role.
- `openai_five`: `latest` with probability `latest_fraction`, otherwise every seat samples the
  snapshots of its role with probability softmax(q); q of a snapshot drops each time the learner
  beats it (OpenAI Five, 2019: q_i <- q_i - eta / (N p_i)).

The server publishes version 0 of every policy before any matchmaking, so a seat whose role has no
snapshot is a bug and raises RuntimeError naming the role.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from mpimarl.league.pool import PolicyPool, Snapshot, SnapshotKey

Lineup = tuple[SnapshotKey, ...]
"""One snapshot key per other seat of a match, in seat order."""

MATCHMAKER_NAMES: tuple[str, ...] = ("latest", "uniform", "openai_five")
"""The names `make_matchmaker` accepts."""

QUALITY_FLOOR_GAP = 30.0
"""How far below its role's best q an `openai_five` quality score may fall. Each step divides by
the snapshot's probability, so a snapshot reported beaten far more often than it is drawn would
otherwise reach -inf within a few hundred reports; at the floor its odds are e^-30 (never drawn)."""


@runtime_checkable
class Matchmaker(Protocol):
    """Chooses the snapshots that fill the other seats of a learner's matches."""

    name: str

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
    ) -> list[Lineup]:
        """`n` lineups for the seats `seat_roles` (the seats other than the learner's)."""
        ...

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """A training outcome reported by a trainer: `score` of the learner against `opponent`."""
        ...

    def on_publish(self, snapshot: Snapshot) -> None:
        """Called by the server after a snapshot has been added to the pool."""
        ...


# ---- shared helpers -----------------------------------------------------------------------------


def _check_request(
    pool: PolicyPool, learner: SnapshotKey, learner_role: str, seat_roles: Sequence[str], n: int
) -> None:
    """Reject requests that can only come from a bug in the caller."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of lineups must be a non-negative int, got {n!r}")
    try:
        role = pool.role_of(learner.policy_id)
    except KeyError:
        raise RuntimeError(
            f"learner policy {learner.policy_id!r} has no snapshot in the pool; the server must "
            "publish version 0 of every policy before matchmaking"
        ) from None
    if role != learner_role:
        raise ValueError(
            f"learner {learner} has role {role!r} in the pool, "
            f"but the request says {learner_role!r}"
        )
    for seat_role in seat_roles:
        if not pool.policy_ids(seat_role):
            raise RuntimeError(
                f"no snapshot of role {seat_role!r} in the pool (roles present: "
                f"{sorted({s.role for s in pool.snapshots()})}); the server must publish version 0 "
                "of every policy before matchmaking"
            )


def _check_score(learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
    if not (0.0 <= score <= 1.0):  # also rejects NaN
        raise ValueError(f"score of {learner} against {opponent} must be in [0, 1], got {score!r}")


def _latest_lineup(
    pool: PolicyPool,
    learner: SnapshotKey,
    learner_role: str,
    seat_roles: Sequence[str],
    rng: np.random.Generator,
) -> Lineup:
    """Own-role seats: the learner's own latest; other seats: the latest of a uniform policy."""
    own_latest = pool.latest(learner.policy_id).key
    seats: list[SnapshotKey] = []
    for role in seat_roles:
        if role == learner_role:
            seats.append(own_latest)
        else:
            ids = pool.policy_ids(role)
            seats.append(pool.latest(ids[int(rng.integers(len(ids)))]).key)
    return tuple(seats)


# ---- strategies ---------------------------------------------------------------------------------


class LatestMatchmaker:
    """Naive self-play: always the newest snapshots (own latest for own-role seats)."""

    name = "latest"

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
    ) -> list[Lineup]:
        """`n` lineups of latest snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        return [_latest_lineup(pool, learner, learner_role, seat_roles, rng) for _ in range(n)]

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """Ignored (the score is still checked)."""
        _check_score(learner, opponent, score)

    def on_publish(self, snapshot: Snapshot) -> None:
        """Ignored: the pool itself knows the latest snapshots."""


class UniformMatchmaker:
    """Fictitious self-play: each seat samples uniformly over every snapshot of its role."""

    name = "uniform"

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
    ) -> list[Lineup]:
        """`n` lineups, each seat drawn independently and uniformly from its role's snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        by_role = {role: [s.key for s in pool.snapshots(role)] for role in set(seat_roles)}
        return [
            tuple(by_role[role][int(rng.integers(len(by_role[role])))] for role in seat_roles)
            for _ in range(n)
        ]

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """Ignored (the score is still checked)."""
        _check_score(learner, opponent, score)

    def on_publish(self, snapshot: Snapshot) -> None:
        """Ignored: sampling reads the pool directly."""


class OpenAIFiveMatchmaker:
    """OpenAI Five opponent sampling: latest with probability `latest_fraction`, else past
    snapshots of each seat's role with probability softmax(q) over their quality scores.

    A new snapshot's q starts at the highest q of its role (0 for the first), so it is sampled at
    least as often as any older one. When the learner beats snapshot i (score 1),
    q_i <- q_i - quality_lr / (N p_i), with N the number of snapshots of i's role and p_i the
    probability of i at that moment: an importance-weighted step, so a rarely drawn snapshot
    that loses still moves. q never falls more than QUALITY_FLOOR_GAP below its role's best.
    Results against the learner's own current version are ignored, since
    that opponent is not a past snapshot.

    Snapshots present in the pool but never passed to `on_publish` (e.g. after a resume) are
    registered, in publish order, on the next `lineups` call.
    """

    name = "openai_five"

    def __init__(self, latest_fraction: float = 0.8, quality_lr: float = 0.01) -> None:
        if not (0.0 <= latest_fraction <= 1.0):
            raise ValueError(f"latest_fraction must be in [0, 1], got {latest_fraction!r}")
        if not (quality_lr > 0.0 and math.isfinite(quality_lr)):
            raise ValueError(f"quality_lr must be a positive finite number, got {quality_lr!r}")
        self.latest_fraction = float(latest_fraction)
        self.quality_lr = float(quality_lr)
        self._quality: dict[SnapshotKey, float] = {}
        self._role_of: dict[SnapshotKey, str] = {}
        self._by_role: dict[str, list[SnapshotKey]] = {}  # publish order

    # ---- quality scores -----------------------------------------------------------------------

    def on_publish(self, snapshot: Snapshot) -> None:
        """Register a snapshot with q = max q of its role (0 if it is the first); idempotent."""
        if snapshot.key in self._quality:
            return
        keys = self._by_role.setdefault(snapshot.role, [])
        self._quality[snapshot.key] = max((self._quality[k] for k in keys), default=0.0)
        self._role_of[snapshot.key] = snapshot.role
        keys.append(snapshot.key)

    def quality(self, key: SnapshotKey) -> float:
        """The quality score q of a registered snapshot; KeyError naming it otherwise."""
        try:
            return self._quality[key]
        except KeyError:
            raise KeyError(f"snapshot {key} has no quality score (never published)") from None

    def probabilities(self, role: str) -> dict[SnapshotKey, float]:
        """Past-snapshot sampling probabilities softmax(q) of a role's snapshots, publish order."""
        keys = self._by_role.get(role, [])
        if not keys:
            return {}
        return dict(zip(keys, self._softmax(keys).tolist(), strict=True))

    def _softmax(self, keys: Sequence[SnapshotKey]) -> np.ndarray:
        q = np.array([self._quality[k] for k in keys], dtype=np.float64)
        e = np.exp(q - q.max())
        return e / e.sum()

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """Lower the opponent's q when the learner beat it (score 1); other scores do nothing."""
        _check_score(learner, opponent, score)
        if score != 1.0 or opponent not in self._quality:
            return  # e.g. the random baseline, which is not sampled from the pool
        if opponent.policy_id == learner.policy_id and opponent.version >= learner.version:
            return  # the learner's current self, not a past snapshot
        keys = self._by_role[self._role_of[opponent]]
        p = self._softmax(keys)[keys.index(opponent)]
        floor = max(self._quality[k] for k in keys) - QUALITY_FLOOR_GAP
        with np.errstate(divide="ignore", over="ignore"):
            step = self.quality_lr / (len(keys) * p)
        self._quality[opponent] = max(float(self._quality[opponent] - step), floor)

    # ---- sampling -----------------------------------------------------------------------------

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
    ) -> list[Lineup]:
        """`n` lineups; each is all-latest with probability `latest_fraction`, else every seat is
        drawn independently from softmax(q) over its role's snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        for snapshot in pool.snapshots():
            self.on_publish(snapshot)
        candidates = {role: self._by_role[role] for role in set(seat_roles)}
        probs = {role: self._softmax(keys) for role, keys in candidates.items()}
        out: list[Lineup] = []
        for _ in range(n):
            if rng.random() < self.latest_fraction:
                out.append(_latest_lineup(pool, learner, learner_role, seat_roles, rng))
                continue
            out.append(
                tuple(
                    candidates[role][int(rng.choice(len(candidates[role]), p=probs[role]))]
                    for role in seat_roles
                )
            )
        return out


# ---- factory ------------------------------------------------------------------------------------


def make_matchmaker(
    name: str, *, latest_fraction: float = 0.8, quality_lr: float = 0.01
) -> Matchmaker:
    """Build the matchmaker called `name` (one of MATCHMAKER_NAMES); ValueError for any other.

    `latest_fraction` and `quality_lr` configure `openai_five` and are ignored by the others.
    """
    factories: dict[str, Callable[[], Matchmaker]] = {
        "latest": LatestMatchmaker,
        "uniform": UniformMatchmaker,
        "openai_five": lambda: OpenAIFiveMatchmaker(latest_fraction, quality_lr),
    }
    if name not in factories:
        raise ValueError(
            f"unknown matchmaker {name!r}; allowed: {', '.join(repr(n) for n in MATCHMAKER_NAMES)}"
        )
    return factories[name]()
