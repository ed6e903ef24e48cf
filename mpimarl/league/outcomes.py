"""Turning episode returns into match scores (1 win, 0.5 draw, 0 loss) and counting them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

WIN, DRAW, LOSS = 1.0, 0.5, 0.0


def match_score(own_return: float, other_return: float, draw_margin: float = 0.0) -> float:
    """Score of one side: 1 if its return beats the other's by more than `draw_margin`,
    0 if it trails by more than `draw_margin`, 0.5 otherwise."""
    if not (math.isfinite(own_return) and math.isfinite(other_return)):
        raise ValueError(f"returns must be finite, got {own_return!r} and {other_return!r}")
    if not (draw_margin >= 0.0 and math.isfinite(draw_margin)):
        raise ValueError(f"draw_margin must be a finite number >= 0, got {draw_margin!r}")
    diff = own_return - other_return
    if diff > draw_margin:
        return WIN
    if diff < -draw_margin:
        return LOSS
    return DRAW


def tally(scores: Iterable[float]) -> tuple[int, int, int]:
    """(wins, draws, losses) in a sequence of scores; ValueError for a score not in {1, 0.5, 0}."""
    wins = draws = losses = 0
    for score in scores:
        if score == WIN:
            wins += 1
        elif score == DRAW:
            draws += 1
        elif score == LOSS:
            losses += 1
        else:
            raise ValueError(f"a match score must be 1, 0.5 or 0, got {score!r}")
    return wins, draws, losses


# ---- sides of one episode: ranks, pairwise scores, and the par reference ------------------------


def rank_sides(values: Sequence[float], margin: float = 0.0) -> list[int]:
    """Competition ranks (0 = best) of sides by `values`, higher is better.

    Sides are sorted best first; a side within `margin` of the side just above it shares that side's
    rank (ties chain down a run of close values), otherwise its rank is its position in the order.
    Two sides reduce to `match_score`: rank 0 vs 1 is a win, equal ranks a draw.
    """
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"side values must be finite, got {list(values)!r}")
    if not (margin >= 0.0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0] * len(values)
    for pos, i in enumerate(order):
        if pos and values[order[pos - 1]] - values[i] <= margin:
            ranks[i] = ranks[order[pos - 1]]
        else:
            ranks[i] = pos
    return ranks


def pairwise_score(ranks: Sequence[int], side: int) -> float:
    """Mean score of `side` against each other side: 1 ahead, 0.5 level, 0 behind.

    With two sides this is the match score; in a free-for-all it is the share of the field beaten.
    """
    others = [r for j, r in enumerate(ranks) if j != side]
    if not others:
        raise ValueError("a pairwise score needs at least two sides")
    own = ranks[side]
    return sum(WIN if own < r else DRAW if own == r else LOSS for r in others) / len(others)


def score_class(score: float) -> float:
    """A pairwise score as the win/draw/loss it is tallied as: 1 and 0 stay, anything between is a draw."""
    return WIN if score == WIN else LOSS if score == LOSS else DRAW


class ParReference:
    """Each role's reference distribution of per-agent returns, from all-random play.

    `standing(role, value)` is the mid-rank percentile of `value` in the role's reference returns,
    a number in [0, 1] that compares across roles whose returns live on different scales: in
    simple_tag a predator that catches the prey once and a prey caught once are each placed against
    what their own role gets when everybody acts at random.
    """

    def __init__(self, returns: dict[str, Sequence[float]]) -> None:
        self._sorted: dict[str, np.ndarray] = {}
        for role, values in returns.items():
            arr = np.sort(np.asarray(values, dtype=np.float64))
            if arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ValueError(f"the par reference of role {role!r} needs finite returns, got {len(arr)} values")
            self._sorted[role] = arr

    def standing(self, role: str, value: float) -> float:
        """Share of the role's reference returns below `value`, counting equal ones half."""
        ref = self._sorted[role]
        below = np.searchsorted(ref, value, side="left")
        upto = np.searchsorted(ref, value, side="right")
        return float((below + 0.5 * (upto - below)) / ref.size)

    def mean(self, role: str) -> float:
        """The role's mean reference return (recorded in the run file)."""
        return float(self._sorted[role].mean())

    def roles(self) -> list[str]:
        """Roles with a reference."""
        return list(self._sorted)

    def to_state(self) -> dict[str, list[float]]:
        """Each role's reference returns (sorted), as JSON data."""
        return {role: arr.tolist() for role, arr in self._sorted.items()}

    @classmethod
    def from_state(cls, state: dict[str, list[float]]) -> ParReference:
        """The reference `to_state` described."""
        return cls(state)
