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
- `pfsp` (AlphaStar's prioritised fictitious self-play): every seat samples the snapshots of its role
  with probability proportional to f(x), x the learner's win rate against that snapshot: hard
  (1-x)^p, variance x(1-x), linear 1-x, linear_capped min(0.5, 1-x). x is a running average over
  the learner's recent games against the snapshot, training and evaluation alike (AlphaStar's
  payoff estimates), falling back on the payoff table where the learner has not met it. A share
  `self_play` of the line-ups is played against the latest snapshots instead (AlphaStar's main
  agents: 35%), so the learner keeps meeting the frontier of its population.
- `psro` (policy-space response oracles): every seat samples its role's meta-strategy, the Nash
  equilibrium of the empirical payoff table restricted to that role's snapshots (LP for zero-sum
  games, replicator dynamics otherwise); asymmetric games get one meta-strategy per role. A
  generation's `n` line-ups are independent draws from it, or with `sampling='systematic'` a
  systematic sample (each snapshot within one of its n w share).

Every matchmaker also reports `meta_strategy(pool, role, payoff)`: the distribution over a role's
snapshots that it draws seats from, which the server records and the exploitability of the
population mixture is measured on. A new matchmaker is one class with the `register` decorator.

The server publishes version 0 of every policy before any matchmaking, so a seat whose role has no
snapshot is a bug and raises RuntimeError naming the role.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mpimarl.league.metasolvers import solve_meta_game
from mpimarl.league.payoff import PayoffEntry, PayoffTable
from mpimarl.league.pool import PolicyPool, Snapshot, SnapshotKey

Lineup = tuple[SnapshotKey, ...]
"""One snapshot key per other seat of a match, in seat order."""

Weights = dict[SnapshotKey, float]
"""A distribution over snapshots of one role (the keys with positive weight, publish order)."""

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
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups for the seats `seat_roles` (the seats other than the learner's)."""
        ...

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """The distribution this matchmaker draws a seat of `role` from (averaged over learners)."""
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




def _latest_weights(pool: PolicyPool, role: str) -> Weights:
    """The latest snapshot of every policy of `role`, equally weighted."""
    ids = pool.policy_ids(role)
    return {pool.latest(p).key: 1.0 / len(ids) for p in ids}


def _draw(weights: Weights, rng: np.random.Generator) -> SnapshotKey:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _systematic(weights: Weights, n: int, rng: np.random.Generator) -> list[SnapshotKey]:
    """`n` draws from `weights` by systematic sampling, in random order.

    The draws sit at the quantiles (u + i) / n of the distribution for one uniform u, so every key
    appears floor(n w) or ceil(n w) times and is still drawn n w times in expectation. A learner's
    generation trains against these `n` line-ups only: independent draws leave it a best response
    to a mixture off by about sqrt(w / n) per snapshot. (On Kuhn that noise helped: two trainers'
    best responses to the same exact mixture were alike, and psro ended more exploitable.)
    """
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    picks = np.searchsorted(cdf, (rng.random() + np.arange(n)) / n, side="right")
    return [keys[int(i)] for i in rng.permutation(np.minimum(picks, len(keys) - 1))]


# ---- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchmakerOptions:
    """Every matchmaker's settings (the config's `matchmaking` section); each strategy reads its own."""

    latest_fraction: float = 0.8
    quality_lr: float = 0.01
    weighting: str = "hard"
    exponent: float = 2.0
    solver: str = "lp"
    window: int | None = None
    sampling: str = "independent"
    self_play: float = 0.0
    memory: int = 256


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a matchmaker available under its `name` to `make_matchmaker` and the config.

    The class is built with `cls.from_options(MatchmakerOptions)` when it has that classmethod, else
    with no arguments.
    """
    name = cls.name  # type: ignore[attr-defined]
    if name in _REGISTRY:
        raise ValueError(f"a matchmaker named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def matchmaker_names() -> tuple[str, ...]:
    """The registered matchmaker names, in registration order."""
    return tuple(_REGISTRY)


# ---- strategies ---------------------------------------------------------------------------------


class _ReadsOnlyThePool:
    """The stateless half of a matchmaker that decides from the pool alone: results and publications
    are ignored (a result's score is still checked) and there is no state to save or restore."""

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """Ignored (the score is still checked)."""
        _check_score(learner, opponent, score)

    def on_publish(self, snapshot: Snapshot) -> None:
        """Ignored: the pool itself holds every snapshot."""

    def to_state(self) -> dict[str, Any]:
        """Nothing to keep: this matchmaker reads only the pool."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


@register
class LatestMatchmaker(_ReadsOnlyThePool):
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
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups of latest snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        return [_latest_lineup(pool, learner, learner_role, seat_roles, rng) for _ in range(n)]

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """The latest snapshot of every policy of `role`, equally."""
        return _latest_weights(pool, role)


@register
class UniformMatchmaker(_ReadsOnlyThePool):
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
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups, each seat drawn independently and uniformly from its role's snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        by_role = {role: [s.key for s in pool.snapshots(role)] for role in set(seat_roles)}
        return [
            tuple(by_role[role][int(rng.integers(len(by_role[role])))] for role in seat_roles)
            for _ in range(n)
        ]

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """Every snapshot of `role`, equally."""
        keys = [s.key for s in pool.snapshots(role)]
        return {k: 1.0 / len(keys) for k in keys}


class _RoleScores:
    """One role's quality scores as `OpenAIFiveMatchmaker.record_result` needs them per reported game:
    their maximum and the softmax denominator, kept as scores change instead of recomputed over every
    snapshot the role ever published. The maximum is a lazy max-heap; the denominator a sum of
    exp(q - ref) for a fixed reference, recomputed exactly (and the heap compacted) once the changes
    since the last recomputation outnumber the snapshots or the sum fell a millionfold (its absolute
    rounding error is that of the largest sum since: relative to a sum that small it would grow), so
    the result is the full softmax's to about 1e-10 and the cost per game O(log n) amortised."""

    def __init__(self, quality: dict[SnapshotKey, float], keys: Sequence[SnapshotKey] = ()) -> None:
        self._quality = quality
        self._keys: list[SnapshotKey] = []
        self._heap: list[tuple[float, int, SnapshotKey]] = []
        self._pushes = 0
        self._ref = 0.0
        self._sum = 0.0
        self._sum_floor = 0.0
        self._changes = 0
        self._rebuild(list(keys))

    def _rebuild(self, keys: list[SnapshotKey]) -> None:
        self._keys = keys
        q = np.array([self._quality[k] for k in keys], dtype=np.float64)
        self._ref = float(q.max()) if len(q) else 0.0
        self._sum = float(np.exp(q - self._ref).sum()) if len(q) else 0.0
        self._sum_floor = self._sum * 1e-6
        self._heap = [(-float(v), i, k) for i, (k, v) in enumerate(zip(keys, q.tolist(), strict=True))]
        heapq.heapify(self._heap)
        self._pushes = len(self._heap)
        self._changes = 0

    def _push(self, key: SnapshotKey, q: float) -> None:
        heapq.heappush(self._heap, (-q, self._pushes, key))
        self._pushes += 1

    def max(self) -> float:
        """The highest q of the role (stale heap entries are dropped on the way)."""
        while self._heap and self._quality[self._heap[0][2]] != -self._heap[0][0]:
            heapq.heappop(self._heap)
        return -self._heap[0][0]

    def probability(self, q: float) -> float:
        """softmax(q) of a snapshot of the role whose score is `q`."""
        return math.exp(q - self._ref) / self._sum

    def add(self, key: SnapshotKey, q: float) -> None:
        """A snapshot registered with score `q` (at most the role's highest: never above the reference)."""
        self._keys.append(key)
        self._sum += math.exp(q - self._ref)
        self._push(key, q)

    def change(self, key: SnapshotKey, old: float, new: float) -> None:
        """A snapshot's score fell from `old` to `new`."""
        self._sum += math.exp(new - self._ref) - math.exp(old - self._ref)
        self._push(key, new)
        self._changes += 1
        count = len(self._keys)
        if self._changes > count or len(self._heap) > 2 * count + 64 or self._sum < self._sum_floor:
            self._rebuild(self._keys)


@register
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

    @classmethod
    def from_options(cls, options: MatchmakerOptions) -> OpenAIFiveMatchmaker:
        """Built from the config's matchmaking options."""
        return cls(options.latest_fraction, options.quality_lr)

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
        self._scores: dict[str, _RoleScores] = {}  # per role: max q and sum exp(q) without a scan
        self._synced: tuple[int, int] = (0, -1)  # (id, size) of the pool last registered from

    def _scores_of(self, role: str) -> _RoleScores:
        scores = self._scores.get(role)
        if scores is None:
            scores = self._scores[role] = _RoleScores(self._quality)
        return scores

    def _sync(self, pool: PolicyPool) -> None:
        """Register the pool's snapshots not passed to `on_publish` (after a resume); a no-op while the
        pool has not grown since the last call, so a request does not walk the pool for it."""
        if self._synced != (id(pool), len(pool)):
            for snapshot in pool.snapshots():
                self.on_publish(snapshot)
            self._synced = (id(pool), len(pool))

    # ---- quality scores -----------------------------------------------------------------------

    def on_publish(self, snapshot: Snapshot) -> None:
        """Register a snapshot with q = max q of its role (0 if it is the first); idempotent."""
        if snapshot.key in self._quality:
            return
        keys = self._by_role.setdefault(snapshot.role, [])
        scores = self._scores_of(snapshot.role)
        q = scores.max() if keys else 0.0
        self._quality[snapshot.key] = q
        self._role_of[snapshot.key] = snapshot.role
        keys.append(snapshot.key)
        scores.add(snapshot.key, q)

    def quality(self, key: SnapshotKey) -> float:
        """The quality score q of a registered snapshot; KeyError naming it otherwise."""
        try:
            return self._quality[key]
        except KeyError:
            raise KeyError(f"snapshot {key} has no quality score (never published)") from None

    def probabilities(self, role: str, pool: PolicyPool | None = None) -> dict[SnapshotKey, float]:
        """Past-snapshot sampling probabilities softmax(q) of a role's snapshots, publish order (only
        those of `pool` that still have weights, when given)."""
        keys = self._candidates(role, pool)
        if not keys:
            return {}
        return dict(zip(keys, self._softmax(keys).tolist(), strict=True))

    def _candidates(self, role: str, pool: PolicyPool | None) -> list[SnapshotKey]:
        """The role's scored snapshots that can be drawn: the retention policy may have dropped some
        weights (pool.keep*); their scores stay, they are just never drawn."""
        keys = self._by_role.get(role, [])
        if pool is None or not pool.dropped_count:
            return keys
        # The pool's drawable index, in publish order as `keys` is: what can be drawn, not the history.
        return [s.key for s in pool.snapshots(role) if s.key in self._quality]

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
        role = self._role_of[opponent]
        keys = self._by_role[role]
        scores = self._scores_of(role)
        p = scores.probability(self._quality[opponent])  # softmax(q) over the role, kept incrementally
        floor = scores.max() - QUALITY_FLOOR_GAP
        with np.errstate(divide="ignore", over="ignore"):
            step = self.quality_lr / (len(keys) * p)
        old = self._quality[opponent]
        self._quality[opponent] = max(float(old - step), floor)
        scores.change(opponent, old, self._quality[opponent])

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """latest_fraction on the role's latest snapshots, the rest by softmax(q)."""
        self._sync(pool)
        out = {k: (1.0 - self.latest_fraction) * p for k, p in self.probabilities(role, pool).items()}
        for k, w in _latest_weights(pool, role).items():
            out[k] = out.get(k, 0.0) + self.latest_fraction * w
        return {k: w for k, w in out.items() if w > 0}

    # ---- checkpoint state ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Quality scores of every registered snapshot, per role in publish order, as JSON data."""
        return {"quality": [[role, k.policy_id, k.version, self._quality[k]]
                            for role, keys in self._by_role.items() for k in keys]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the quality scores with those `to_state` described."""
        self._quality, self._role_of, self._by_role = {}, {}, {}
        for role, pid, version, q in state["quality"]:
            key = SnapshotKey(str(pid), int(version))
            self._quality[key] = float(q)
            self._role_of[key] = str(role)
            self._by_role.setdefault(str(role), []).append(key)
        self._scores = {role: _RoleScores(self._quality, keys) for role, keys in self._by_role.items()}
        self._synced = (0, -1)

    # ---- sampling -----------------------------------------------------------------------------

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups; each is all-latest with probability `latest_fraction`, else every seat is
        drawn independently from softmax(q) over its role's snapshots."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        self._sync(pool)
        candidates = {role: self._candidates(role, pool) for role in set(seat_roles)}
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




# ---- payoff-driven strategies -------------------------------------------------------------------


def _entry_rate(entry: PayoffEntry) -> float:
    """A payoff entry as a win rate in [0, 1]: the score of played games, or for exact expected
    returns 0.5 + tanh(value) / 2 (an even game is 0.5, a large expected gain nears 1)."""
    if entry.games > 0:
        return float(entry.score)
    if entry.exact and math.isfinite(entry.value):
        return 0.5 + 0.5 * math.tanh(entry.value)
    return math.nan


def win_rate(payoff: PayoffTable | None, learner: SnapshotKey, opponent: SnapshotKey) -> float:
    """The learner's win rate against `opponent` in the payoff table, NaN when the table has none.

    The learner's newest snapshot has usually not been evaluated yet (evaluation trails publishing),
    so its newest version with an entry stands in; an entry with the opponent as row counts mirrored.
    """
    if payoff is None:
        return math.nan
    if opponent.policy_id == learner.policy_id and opponent.version >= learner.version:
        return 0.5  # its current self
    # Only the learner's versions that have an entry with the opponent, newest first (the table's
    # index): the same answer as walking every version down from the learner's, without the walk.
    as_row, as_member = payoff.versions_against(learner.policy_id, str(opponent))
    i, j = bisect.bisect_right(as_row, learner.version) - 1, bisect.bisect_right(as_member, learner.version) - 1
    while i >= 0 or j >= 0:
        version = max(as_row[i] if i >= 0 else -1, as_member[j] if j >= 0 else -1)
        i -= i >= 0 and as_row[i] == version
        j -= j >= 0 and as_member[j] == version
        row = f"{learner.policy_id}@{version}"
        entry = payoff.pair(row, str(opponent))
        if entry is not None:
            rate = _entry_rate(entry)
            if math.isfinite(rate):
                return rate
        entry = payoff.pair(str(opponent), row)
        if entry is not None:
            rate = _entry_rate(entry)
            if math.isfinite(rate):
                return 1.0 - rate
    return math.nan


PFSP_WEIGHTINGS: dict[str, Callable[[float, float], float]] = {
    "hard": lambda x, p: (1.0 - x) ** p,
    "variance": lambda x, p: x * (1.0 - x),
    "linear": lambda x, p: 1.0 - x,
    "linear_capped": lambda x, p: min(0.5, 1.0 - x),
}
"""AlphaStar's PFSP weightings f(x) of the learner's win rate x (p: the `hard` exponent)."""


@register
class PFSPMatchmaker:
    """Prioritised fictitious self-play (AlphaStar, Vinyals et al. 2019).

    Each seat draws from every snapshot of its role with probability proportional to f(x), x the
    learner's win rate against the snapshot. x is the learner's own recent record against it: every
    reported game (training and evaluation) enters a running average that forgets with a time
    constant of `memory` games, so a snapshot the learner used to lose to but now beats loses its
    priority as soon as the two meet again. Where the learner has no games against a snapshot, x
    comes from the payoff table (`win_rate`), else 0.5 (unmeasured snapshots are drawn too). When
    every weight is 0 (the learner beats them all under `hard`), the draw is uniform.

    With probability `self_play` a line-up is the latest snapshots instead (own-role seats the
    learner's own latest): the share of AlphaStar's main agents' games that are plain self-play.
    """

    name = "pfsp"

    @classmethod
    def from_options(cls, options: MatchmakerOptions) -> PFSPMatchmaker:
        """Built from the config's matchmaking options."""
        return cls(options.weighting, options.exponent, options.self_play, options.memory)

    def __init__(self, weighting: str = "hard", exponent: float = 2.0, self_play: float = 0.0,
                 memory: int = 256) -> None:
        if weighting not in PFSP_WEIGHTINGS:
            raise ValueError(f"unknown pfsp weighting {weighting!r}; allowed: "
                             f"{', '.join(repr(w) for w in PFSP_WEIGHTINGS)}")
        if not (exponent > 0 and math.isfinite(exponent)):
            raise ValueError(f"pfsp exponent must be a positive finite number, got {exponent!r}")
        if not (0.0 <= self_play <= 1.0):
            raise ValueError(f"pfsp self_play must be a share in [0, 1], got {self_play!r}")
        if memory < 0:
            raise ValueError(f"pfsp memory must be a number of games >= 0, got {memory!r}")
        self.weighting = weighting
        self.exponent = float(exponent)
        self.self_play = float(self_play)
        self.memory = int(memory)
        self._f = PFSP_WEIGHTINGS[weighting]
        self._faces: dict[str, set[str]] = {}  # seat role -> learner roles that asked for it
        # (learner policy id, opponent) -> [decayed score sum, decayed game count]
        self._record: dict[tuple[str, SnapshotKey], list[float]] = {}

    def estimate(self, payoff: PayoffTable | None, learner: SnapshotKey, opponent: SnapshotKey) -> float:
        """x: the learner's recent win rate against `opponent` (NaN when nothing is known)."""
        if opponent.policy_id == learner.policy_id and opponent.version >= learner.version:
            return 0.5  # its current self
        kept = self._record.get((learner.policy_id, opponent))
        if kept is not None and kept[1] > 0:
            return kept[0] / kept[1]
        return win_rate(payoff, learner, opponent)

    def weights(self, pool: PolicyPool, learner: SnapshotKey, role: str, payoff: PayoffTable | None) -> Weights:
        """The learner's normalised PFSP distribution over the snapshots of `role`."""
        keys = [s.key for s in pool.snapshots(role)]
        raw = []
        for k in keys:
            x = self.estimate(payoff, learner, k)
            raw.append(self._f(0.5 if math.isnan(x) else min(max(x, 0.0), 1.0), self.exponent))
        total = float(sum(raw))
        if total <= 0:
            return {k: 1.0 / len(keys) for k in keys}
        return {k: w / total for k, w in zip(keys, raw) if w > 0}

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups: each the latest snapshots with probability `self_play`, else every seat drawn
        from the learner's PFSP distribution over its role."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        for role in seat_roles:
            self._faces.setdefault(role, set()).add(learner_role)
        dists = {role: self.weights(pool, learner, role, payoff) for role in set(seat_roles)}
        out: list[Lineup] = []
        for _ in range(n):
            if self.self_play > 0 and rng.random() < self.self_play:
                out.append(_latest_lineup(pool, learner, learner_role, seat_roles, rng))
            else:
                out.append(tuple(_draw(dists[role], rng) for role in seat_roles))
        return out

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """One game's score of the learner against `opponent` enters its running average (the
        learner's policy, whatever its version: older games fade with `memory`)."""
        _check_score(learner, opponent, score)
        if self.memory == 0:
            return
        keep = 1.0 - 1.0 / self.memory
        kept = self._record.setdefault((learner.policy_id, opponent), [0.0, 0.0])
        kept[0] = kept[0] * keep + score
        kept[1] = kept[1] * keep + 1.0

    def to_state(self) -> dict[str, Any]:
        """Which learner roles asked for each seat role (what `meta_strategy` averages over), and the
        running win-rate records."""
        return {"faces": {role: sorted(roles) for role, roles in self._faces.items()},
                "record": [[pid, k.policy_id, k.version, v[0], v[1]] for (pid, k), v in self._record.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `to_state` described."""
        self._faces = {str(role): set(roles) for role, roles in state["faces"].items()}
        self._record = {(str(pid), SnapshotKey(str(opp), int(ver))): [float(s), float(g)]
                        for pid, opp, ver, s, g in state.get("record", [])}

    def on_publish(self, snapshot: Snapshot) -> None:
        """Ignored: sampling reads the pool directly."""

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """What every learner that meets `role` draws its seats from (the `self_play` share on the
        latest snapshots, the rest its PFSP distribution), averaged over those learners."""
        faces = self._faces.get(role)
        learners = [pool.latest(p).key for p in pool.policy_ids() if faces is None or pool.role_of(p) in faces]
        out: Weights = {}
        for learner in learners:
            own_latest = self.self_play if pool.role_of(learner.policy_id) == role else 0.0
            if own_latest:
                out[learner] = out.get(learner, 0.0) + own_latest / len(learners)
            else:
                for k, w in _latest_weights(pool, role).items():
                    out[k] = out.get(k, 0.0) + self.self_play * w / len(learners)
            for k, w in self.weights(pool, learner, role, payoff).items():
                out[k] = out.get(k, 0.0) + (1.0 - self.self_play) * w / len(learners)
        return {k: w for k, w in out.items() if w > 0}


@register
class PSROMatchmaker:
    """Policy-space response oracles (Lanctot et al. 2017): train against the Nash of the meta-game.

    The meta-game of a role is its snapshots (the newest `window`, those the payoff table has
    measured) against the snapshots it meets: itself for a symmetric role (a square, antisymmetric
    table of `PayoffEntry.value`), the first other role it faces otherwise (a bimatrix solved per
    role, so asymmetric games get one meta-strategy per role). Missing cells count as even (0). The
    `lp` solver solves the zero-sum game exactly (a vertex of the equilibrium set); `max_entropy`
    takes a symmetric table's maximum-entropy equilibrium (bimatrix tables: lp), which keeps every
    snapshot that some equilibrium plays in the mixture; `replicator` runs replicator dynamics. Until the
    table measures any snapshot of the role, the meta-strategy is the role's latest snapshots.
    """

    name = "psro"

    @classmethod
    def from_options(cls, options: MatchmakerOptions) -> PSROMatchmaker:
        """Built from the config's matchmaking options."""
        return cls(options.solver, options.window, options.sampling)

    def __init__(self, solver: str = "lp", window: int | None = None, sampling: str = "independent") -> None:
        if sampling not in ("independent", "systematic"):
            raise ValueError(f"unknown psro sampling {sampling!r}; allowed: 'independent', 'systematic'")
        self.sampling = sampling
        if solver not in ("lp", "max_entropy", "replicator"):
            raise ValueError(f"unknown psro solver {solver!r}; allowed: 'lp', 'max_entropy', 'replicator'")
        if window is not None and window < 2:
            raise ValueError(f"psro window must be at least 2 snapshots, got {window!r}")
        self.solver = solver
        self.window = window
        self._opponent_role: dict[str, str] = {}  # role -> the role its seats face (learned from requests)

    def _members(self, pool: PolicyPool, role: str, payoff: PayoffTable | None) -> list[SnapshotKey]:
        keys = [s.key for s in pool.snapshots(role)]
        if self.window:
            keys = keys[-self.window:]
        if payoff is None:
            return []
        measured = payoff.measured()  # an index: not a scan of every entry ever recorded
        return [k for k in keys if str(k) in measured]

    def meta_strategy(self, pool: PolicyPool, role: str, payoff: PayoffTable | None = None) -> Weights:
        """The Nash meta-strategy of `role` over its measured snapshots."""
        rows = self._members(pool, role, payoff)
        if not rows or payoff is None:
            return _latest_weights(pool, role)
        other = self._opponent_role.get(role, role)
        if other == role:
            ids = [str(k) for k in rows]
            a = np.nan_to_num(payoff.matrix(ids, ids, "value", antisymmetric_fill=True), nan=0.0)
            a = (a - a.T) / 2.0  # both measured directions of a pair, averaged
            p, _ = solve_meta_game(a, self.solver)
        else:
            cols = self._members(pool, other, payoff)
            if not cols:
                return _latest_weights(pool, role)
            a = np.nan_to_num(payoff.matrix([str(k) for k in rows], [str(k) for k in cols], "value",
                                            antisymmetric_fill=True), nan=0.0)
            p, _ = solve_meta_game(a, "lp" if self.solver == "max_entropy" else self.solver)
        p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
        p = p / p.sum()
        return {k: float(w) for k, w in zip(rows, p) if w > 1e-9}

    def lineups(
        self,
        pool: PolicyPool,
        learner: SnapshotKey,
        learner_role: str,
        seat_roles: Sequence[str],
        n: int,
        rng: np.random.Generator,
        payoff: PayoffTable | None = None,
    ) -> list[Lineup]:
        """`n` lineups, each seat drawn from its role's meta-strategy: independently, or (sampling
        'systematic') each seat's column a systematic sample (each snapshot within one of n w of the
        seats), shuffled independently per seat."""
        _check_request(pool, learner, learner_role, seat_roles, n)
        for role in seat_roles:
            if role != learner_role:
                self._opponent_role.setdefault(role, learner_role)
                self._opponent_role.setdefault(learner_role, role)
        dists = {role: self.meta_strategy(pool, role, payoff) for role in set(seat_roles)}
        if self.sampling == "independent":
            return [tuple(_draw(dists[role], rng) for role in seat_roles) for _ in range(n)]
        columns = [_systematic(dists[role], n, rng) for role in seat_roles]
        return [tuple(column[i] for column in columns) for i in range(n)]

    def record_result(self, learner: SnapshotKey, opponent: SnapshotKey, score: float) -> None:
        """Ignored: the meta-game is the payoff table (the score is still checked)."""
        _check_score(learner, opponent, score)

    def on_publish(self, snapshot: Snapshot) -> None:
        """Ignored: the meta-game reads the pool and the payoff table."""

    def to_state(self) -> dict[str, Any]:
        """The role each role's seats face (learned from requests), as JSON data."""
        return {"opponent_role": dict(self._opponent_role)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `to_state` described."""
        self._opponent_role = {str(k): str(v) for k, v in state["opponent_role"].items()}


# ---- checkpoint state -----------------------------------------------------------------------------


def matchmaker_state(matchmaker: Matchmaker) -> dict[str, Any]:
    """A matchmaker's state as JSON data for a checkpoint.

    Every built-in matchmaker has `to_state`/`load_state`; a registered matchmaker without them is
    taken to hold no state beyond the pool and payoff table it is handed (say so in its class, or
    add the two methods, or a resumed run forgets what it learned).
    """
    to_state = getattr(matchmaker, "to_state", None)
    return to_state() if to_state is not None else {}


def load_matchmaker_state(matchmaker: Matchmaker, state: dict[str, Any]) -> None:
    """Restore a state `matchmaker_state` returned (nothing for a matchmaker without `load_state`)."""
    load = getattr(matchmaker, "load_state", None)
    if load is not None:
        load(state)


# ---- factory ------------------------------------------------------------------------------------


def make_matchmaker(name: str, **options: Any) -> Matchmaker:
    """Build the registered matchmaker called `name`; ValueError naming the allowed ones otherwise.

    `options` are `MatchmakerOptions` fields (latest_fraction, quality_lr, weighting, exponent,
    solver, window, self_play, memory); each strategy reads its own and ignores the rest.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown matchmaker {name!r}; allowed: {', '.join(repr(n) for n in _REGISTRY)}")
    allowed = sorted(MatchmakerOptions.__dataclass_fields__)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown matchmaker options {unknown}; allowed: {allowed}")
    cls = _REGISTRY[name]
    built = cls.from_options(MatchmakerOptions(**options)) if hasattr(cls, "from_options") else cls()
    return built  # type: ignore[no-any-return]


MATCHMAKER_NAMES: tuple[str, ...] = matchmaker_names()
"""The names `make_matchmaker` accepts (every registered strategy)."""
