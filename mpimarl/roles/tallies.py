"""Training match tallies, shared by every rank that learns: a trainer, a learner group, an IMPALA learner.

A rank counts the outcomes of its training matches per line-up (`Tally`); a group leader or an IMPALA
learner gathers its ranks' tallies as JSON (`tallies_to_json`, `sum_tallies`) and reports the sum to
rank 0. `finite_row` makes a row JSON-safe before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tally:
    """Training outcomes against one line-up during one generation."""

    episodes: int = 0
    own_return: float = 0.0
    other_return: float = 0.0
    length: float = 0.0
    scores: list[float] = field(default_factory=list)


def tallies_to_json(tallies: dict[int, Tally]) -> dict[str, list[Any]]:
    """Tallies as JSON data, to gather at the rank that reports them (a group leader, a learner)."""
    return {str(i): [t.episodes, t.own_return, t.other_return, t.length, t.scores] for i, t in tallies.items()}


def sum_tallies(parts: list[dict[str, list[Any]]]) -> dict[int, Tally]:
    """The per-line-up sum of several ranks' `tallies_to_json` parts."""
    out: dict[int, Tally] = {}
    for part in parts:
        for index, (episodes, own, other, length, scores) in part.items():
            t = out.setdefault(int(index), Tally())
            t.episodes += int(episodes)
            t.own_return += float(own)
            t.other_return += float(other)
            t.length += float(length)
            t.scores.extend(float(x) for x in scores)
    return out


def finite_row(row: dict[str, object]) -> dict[str, object]:
    """JSON has no NaN: send None, which the recorder stores as NaN."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}

