"""Turning episode returns into match scores (1 win, 0.5 draw, 0 loss) and counting them."""

from __future__ import annotations

import math
from collections.abc import Iterable

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
