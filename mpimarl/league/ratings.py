"""Per-role ratings of snapshots and baselines: Elo beside openskill's Plackett-Luce (mu, sigma).

Every rated entity is a (role, SnapshotKey): a policy plays one role, but a baseline such as
random plays every role, and its strength differs per role, so each role has its own anchors.
Anchors are fixed: the role's random baseline at the initial rating, and scripted baselines
placed by their measured score against random (`add_anchor`). They give both scales an origin.

One game is rated at a time (`rate_game`), from the competition ranks of its seats, so the same
code rates duels, free-for-alls and team games.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from statistics import NormalDist
from typing import Any

from openskill.models import PlackettLuce

from mpimarl.league.pool import SnapshotKey

Entity = tuple[str, SnapshotKey]
"""A rated entity: (role, snapshot key)."""

ANCHOR_SIGMA_FRACTION = 1e-3
"""An anchor's sigma as a fraction of the default sigma: near-certain, but > 0 as openskill needs."""


@dataclass(frozen=True)
class Rating:
    """One entity's ratings: Elo, openskill mu and sigma, and the rated games it played."""

    elo: float
    mu: float
    sigma: float
    games: int


@dataclass
class _State:
    elo: float
    mu: float
    sigma: float
    games: int = 0
    anchor: bool = False


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _competition_ranks(values: Sequence[float]) -> list[int]:
    """Competition ranks (0 best, lower value better): ties share a rank, the next rank skips ('1224')."""
    return [sum(1 for w in values if w < v) for v in values]


def _pair_score(rank_i: int, rank_j: int) -> float:
    return 1.0 if rank_i < rank_j else 0.5 if rank_i == rank_j else 0.0


class Ratings:
    """Elo and Plackett-Luce ratings per (role, snapshot key), with fixed per-role anchors.

    Elo uses K = `elo_k` and the initial rating `elo_initial`; openskill's model uses the prior
    `mu`, `sigma` and the performance noise `beta`.
    """

    def __init__(self, elo_k: float = 16.0, elo_initial: float = 1000.0, mu: float = 25.0, sigma: float = 25.0 / 3.0,
                 beta: float = 25.0 / 6.0) -> None:
        self.elo_k = _positive("Elo k", elo_k)
        self.elo_initial = _finite("initial Elo rating", elo_initial)
        self.mu = _finite("initial mu", mu)
        self.sigma = _positive("initial sigma", sigma)
        self.beta = _positive("beta", beta)
        self.anchor_sigma = ANCHOR_SIGMA_FRACTION * self.sigma
        self.model = PlackettLuce(mu=self.mu, sigma=self.sigma, beta=self.beta)
        self._state: dict[Entity, _State] = {}

    # ---- registration -------------------------------------------------------------------------

    def add_anchor(self, role: str, key: SnapshotKey, win_probability: float | None = None) -> None:
        """Fix (role, key) as an anchor that never moves; calling again re-fixes it.

        `win_probability` None places it at the initial Elo and mu (the role's random baseline).
        Otherwise p, its expected score against the role's random anchor (0 < p < 1), places it at
            elo = elo_initial + 400 log10(p / (1 - p))   (Elo's logistic inverted), and
            mu  = mu0 + s * Phi^-1(p),  s = sqrt(2 beta^2 + 2 anchor_sigma^2),
        since openskill's PlackettLuce.predict_win for two sides is Phi((mu_a - mu_b) / s) (a
        probit, not the logistic exp(mu_i/c) / sum exp(mu/c) of its update): so predict_win against
        the random anchor is exactly p. In log-odds form, mu = mu0 + c ln(p / (1 - p)) with
        c = s Phi^-1(p) / ln(p / (1 - p)).
        """
        if win_probability is None:
            elo, mu = self.elo_initial, self.mu
        else:
            p = float(win_probability)
            if not (0.0 < p < 1.0):
                raise ValueError(f"win probability of anchor ({role}, {key}) against random must be in (0, 1), "
                                 f"got {win_probability!r}")
            elo = self.elo_initial + 400.0 * math.log10(p / (1.0 - p))
            scale = math.sqrt(2.0 * self.beta**2 + 2.0 * self.anchor_sigma**2)
            mu = self.mu + scale * NormalDist().inv_cdf(p)
        games = self._state[(role, key)].games if (role, key) in self._state else 0
        self._state[(role, key)] = _State(elo, mu, self.anchor_sigma, games, anchor=True)

    def add(self, role: str, key: SnapshotKey, parent: SnapshotKey | None) -> Rating:
        """Register a new snapshot of `role`; returns its starting rating.

        It starts at its parent's Elo and mu when the parent is rated in the same role (a new
        version starts where the one it was trained from stood), else at the initial ones, and
        always with the default sigma (a changed policy: full uncertainty). ValueError if (role,
        key) is already rated, since re-seeding would erase its record.
        """
        if (role, key) in self._state:
            raise ValueError(f"({role}, {key}) is already rated")
        source = self._state.get((role, parent)) if parent is not None else None
        elo, mu = (source.elo, source.mu) if source is not None else (self.elo_initial, self.mu)
        self._state[(role, key)] = _State(elo, mu, self.sigma)
        return self.rating(role, key)

    # ---- queries ------------------------------------------------------------------------------

    def __contains__(self, item: object) -> bool:
        return item in self._state

    def _get(self, role: str, key: SnapshotKey) -> _State:
        state = self._state.get((role, key))
        if state is None:
            raise KeyError(f"({role}, {key}) is not rated; register it with add or add_anchor first")
        return state

    def rating(self, role: str, key: SnapshotKey) -> Rating:
        """The ratings of (role, key); KeyError naming it if unknown."""
        s = self._get(role, key)
        return Rating(s.elo, s.mu, s.sigma, s.games)

    def is_anchor(self, role: str, key: SnapshotKey) -> bool:
        """Whether (role, key) is a fixed anchor; KeyError naming it if unknown."""
        return self._get(role, key).anchor

    def items(self, role: str | None = None) -> list[tuple[str, SnapshotKey, Rating]]:
        """(role, key, rating) of every entity (of `role` only, if given), sorted by role then key."""
        return [(r, k, self.rating(r, k)) for r, k in sorted(self._state) if role is None or r == role]

    # ---- updates ------------------------------------------------------------------------------

    def rate_game(self, sides: Sequence[Sequence[Entity]], ranks: Sequence[int]) -> None:
        """Rate one game: `sides[i]` is the team in seat i, `ranks[i]` its competition rank (0 best).

        A side that fills several seats counts once: its rank is the mean of its seats' ranks and
        the distinct sides are re-ranked on those means; with fewer than two distinct sides the game
        rates nobody. Elo plays every pair of distinct sides, scored 1 / 0.5 / 0 from the ranks, with
        K / (n - 1) so a free-for-all moves a rating about as much as one duel; all deltas come from
        the ratings before the game (order-independent), a team's Elo is its members' mean and each
        member gets the team's delta. openskill's Plackett-Luce rates the distinct sides on their
        ranks. Anchors never move; every distinct entity's game count goes up by one.
        """
        if len(sides) != len(ranks):
            raise ValueError(f"a game needs one rank per side, got {len(sides)} sides and {len(ranks)} ranks")
        seat_ranks: dict[tuple[Entity, ...], list[float]] = {}
        for side, rank in zip(sides, ranks):
            if not side:
                raise ValueError(f"every side of a game needs at least one member, got sides {sides!r}")
            if isinstance(rank, bool) or not isinstance(rank, Real) or not math.isfinite(rank):
                raise ValueError(f"ranks must be finite numbers, got {list(ranks)!r}")
            team = tuple(sorted((role, key) for role, key in side))
            for role, key in team:
                self._get(role, key)
            seat_ranks.setdefault(team, []).append(float(rank))
        if len(seat_ranks) < 2:
            return
        teams = list(seat_ranks)
        merged = _competition_ranks([sum(r) / len(r) for r in seat_ranks.values()])
        self._rate_elo(teams, merged)
        self._rate_openskill(teams, merged)
        for entity in {e for team in teams for e in team}:
            self._state[entity].games += 1

    def _rate_elo(self, teams: list[tuple[Entity, ...]], ranks: list[int]) -> None:
        k = self.elo_k / (len(teams) - 1)
        elo = [sum(self._state[e].elo for e in team) / len(team) for team in teams]
        deltas = [0.0] * len(teams)
        for i in range(len(teams)):
            for j in range(len(teams)):
                if i != j:
                    expected = 1.0 / (1.0 + 10.0 ** ((elo[j] - elo[i]) / 400.0))
                    deltas[i] += k * (_pair_score(ranks[i], ranks[j]) - expected)
        for team, delta in zip(teams, deltas):
            for entity in dict.fromkeys(team):
                state = self._state[entity]
                if not state.anchor:
                    state.elo += delta

    def _rate_openskill(self, teams: list[tuple[Entity, ...]], ranks: list[int]) -> None:
        before = [[self.model.rating(mu=self._state[e].mu, sigma=self._state[e].sigma) for e in team]
                  for team in teams]
        after = self.model.rate(before, ranks=[float(r) for r in ranks])
        for team, new in zip(teams, after):
            for entity, player in zip(team, new):
                state = self._state[entity]
                if not state.anchor:  # anchors keep their values: openskill moved its copy only
                    state.mu, state.sigma = float(player.mu), float(player.sigma)

    # ---- checkpoint state ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The model's parameters and every entity's ratings (registration order), as JSON data."""
        return {
            "params": {"elo_k": self.elo_k, "elo_initial": self.elo_initial, "mu": self.mu, "sigma": self.sigma,
                       "beta": self.beta},
            "entities": [[role, key.policy_id, key.version, s.elo, s.mu, s.sigma, s.games, s.anchor]
                         for (role, key), s in self._state.items()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ratings:
        """The ratings `to_state` described, exactly (floats round-trip through JSON)."""
        ratings = cls(**state["params"])
        for role, pid, version, elo, mu, sigma, games, anchor in state["entities"]:
            ratings._state[(str(role), SnapshotKey(str(pid), int(version)))] = _State(
                float(elo), float(mu), float(sigma), int(games), bool(anchor))
        return ratings
