"""The empirical payoff table: cumulative results of every row against every column.

A row is one seat's occupant (a snapshot id 'policy@version' or a baseline name); a column is the
line-up it faced, the ids of the other seats joined with '+' ('player-0@3+player-1@2+random').
Besides the entry for the exact column, `add` keeps a pairwise entry (row, member) for every
distinct member of the column, so meta-games over single opponents can be read from games that
had several. `matrix` reads the pairwise entries into the square tables the meta-solvers take.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

MEMBER_SEPARATOR = "+"
"""Joins the ids of a column's seats."""

MATRIX_FIELDS = ("score", "value", "return_mean", "opponent_return_mean", "games")
"""The entry fields `PayoffTable.matrix` can read."""


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion of `successes` in `n` trials; (nan, nan) for n == 0.

    `successes` may be fractional (wins + draws / 2). The interval stays inside [0, 1] and, unlike
    the normal approximation, is not degenerate at 0 or n successes.
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"number of trials n must be a non-negative int, got {n!r}")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a positive finite number, got {z!r}")
    if n == 0:
        return math.nan, math.nan
    if not (0.0 <= successes <= n):  # also rejects NaN
        raise ValueError(f"successes must be in [0, n={n}], got {successes!r}")
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PayoffEntry:
    """Cumulative results of one row against one column.

    Sampled entries count games (from the row's side) and sum both sides' returns; an exact entry
    (`set_exact`, e.g. expected values computed by OpenSpiel) holds expected returns and no games.
    `return_sum` is the row's total return, `opponent_return_sum` the total of the other seats.
    """

    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    return_sum: float = 0.0
    opponent_return_sum: float = 0.0
    exact: bool = False
    exact_return: float = math.nan
    exact_opponent_return: float = math.nan

    @property
    def score(self) -> float:
        """(wins + draws / 2) / games; nan with no games."""
        return (self.wins + 0.5 * self.draws) / self.games if self.games else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of `score`; (nan, nan) with no games."""
        return wilson_interval(self.wins + 0.5 * self.draws, self.games)

    @property
    def return_mean(self) -> float:
        """The row's mean return: the exact expected return when exact, else nan with no games."""
        if self.exact:
            return self.exact_return
        return self.return_sum / self.games if self.games else math.nan

    @property
    def opponent_return_mean(self) -> float:
        """The other seats' mean return, as `return_mean`."""
        if self.exact:
            return self.exact_opponent_return
        return self.opponent_return_sum / self.games if self.games else math.nan

    @property
    def value(self) -> float:
        """The meta-game payoff, centred at 0 so a zero-sum table is antisymmetric.

        Exact: the expected return. Sampled: score - 0.5 (nan with no games).
        """
        return self.exact_return if self.exact else self.score - 0.5

    def accumulate(self, wins: int, draws: int, losses: int, return_sum: float, opponent_return_sum: float) -> None:
        """Add a batch of games; an exact entry stays exact (its expected values are kept)."""
        self.games += wins + draws + losses
        self.wins += wins
        self.draws += draws
        self.losses += losses
        self.return_sum += return_sum
        self.opponent_return_sum += opponent_return_sum


def column_members(column_id: str) -> list[str]:
    """The distinct member ids of a column, in first-seat order; ValueError for an empty member."""
    members = column_id.split(MEMBER_SEPARATOR)
    if any(not m for m in members):
        raise ValueError(f"column id {column_id!r} has an empty member (ids are joined with {MEMBER_SEPARATOR!r})")
    return list(dict.fromkeys(members))


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _check_finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


class PayoffTable:
    """Payoff entries per (row, column), plus the pairwise entries per (row, column member).

    A pairwise entry (row, m) accumulates every game of `row` whose column includes `m`, once per
    game however many seats `m` filled; while only single-member columns were played it equals the
    entry `get(row, m)`.
    """

    def __init__(self) -> None:
        self._direct: dict[tuple[str, str], PayoffEntry] = {}
        self._pairwise: dict[tuple[str, str], PayoffEntry] = {}
        # Indexes kept as entries arrive, so that rank 0's per-request reads do not scan the history:
        # every id that has an entry (as a row or a column member), and per (policy id, other id) the
        # versions v with a pairwise entry (policy@v, other) and with one (other, policy@v), ascending.
        self._measured: set[str] = set()
        self._as_row: dict[tuple[str, str], list[int]] = {}
        self._as_member: dict[tuple[str, str], list[int]] = {}

    def _index_pair(self, row_id: str, member_id: str) -> None:
        """Index a new pairwise entry (row, member)."""
        self._measured.update((row_id, member_id))
        for own, other, index in ((row_id, member_id, self._as_row), (member_id, row_id, self._as_member)):
            policy_id, at, version = own.rpartition("@")
            if at and version.isdigit():
                versions = index.setdefault((policy_id, other), [])
                v = int(version)
                if not versions or versions[-1] < v:
                    versions.append(v)  # the usual case: a policy's versions arrive in order
                else:
                    bisect.insort(versions, v)

    def _pairwise_entry(self, row_id: str, member_id: str) -> PayoffEntry:
        """The pairwise entry (row, member), created (and indexed) when new."""
        entry = self._pairwise.get((row_id, member_id))
        if entry is None:
            entry = self._pairwise[(row_id, member_id)] = PayoffEntry()
            self._index_pair(row_id, member_id)
        return entry

    # ---- updates ------------------------------------------------------------------------------

    def add(self, row_id: str, column_id: str, wins: int, draws: int, losses: int, return_sum: float,
            opponent_return_sum: float) -> PayoffEntry:
        """Accumulate a batch of games of `row_id` against `column_id`; returns the (row, column) entry."""
        _check_id("row_id", row_id)
        _check_id("column_id", column_id)
        for name, count in (("wins", wins), ("draws", draws), ("losses", losses)):
            _check_count(f"{name} of {row_id} against {column_id}", count)
        _check_finite(f"return_sum of {row_id} against {column_id}", return_sum)
        _check_finite(f"opponent_return_sum of {row_id} against {column_id}", opponent_return_sum)
        members = column_members(column_id)
        batch = (int(wins), int(draws), int(losses), float(return_sum), float(opponent_return_sum))
        entry = self._direct.setdefault((row_id, column_id), PayoffEntry())
        entry.accumulate(*batch)
        self._measured.add(row_id)
        for member in members:
            self._pairwise_entry(row_id, member).accumulate(*batch)
        return entry

    def set_exact(self, row_id: str, column_id: str, own_return: float, opponent_return: float) -> PayoffEntry:
        """Overwrite the (row, column) entry with exact expected returns (no games); returns it.

        For a single-member column the pairwise entry is overwritten too; a pairwise value cannot be
        derived from an exact several-member column, so those pairwise entries are left as they are.
        """
        _check_id("row_id", row_id)
        _check_id("column_id", column_id)
        _check_finite(f"exact return of {row_id} against {column_id}", own_return)
        _check_finite(f"exact opponent return of {row_id} against {column_id}", opponent_return)
        members = column_members(column_id)
        entry = PayoffEntry(exact=True, exact_return=float(own_return), exact_opponent_return=float(opponent_return))
        self._direct[(row_id, column_id)] = entry
        self._measured.update((row_id, *members))
        if len(members) == 1:
            if (row_id, members[0]) not in self._pairwise:
                self._index_pair(row_id, members[0])
            self._pairwise[(row_id, members[0])] = PayoffEntry(
                exact=True, exact_return=float(own_return), exact_opponent_return=float(opponent_return))
        return entry

    # ---- queries ------------------------------------------------------------------------------

    def get(self, row_id: str, column_id: str) -> PayoffEntry | None:
        """The entry for exactly that column, or None."""
        return self._direct.get((row_id, column_id))

    def pair(self, row_id: str, member_id: str) -> PayoffEntry | None:
        """The pairwise entry of `row_id` against every column that included `member_id`, or None."""
        return self._pairwise.get((row_id, member_id))

    def versions_against(self, policy_id: str, other_id: str) -> tuple[list[int], list[int]]:
        """The versions v of `policy_id` with a pairwise entry (policy_id@v, other_id), and those with
        one (other_id, policy_id@v), each ascending (read-only views: an index, not a scan)."""
        return self._as_row.get((policy_id, other_id), []), self._as_member.get((policy_id, other_id), [])

    def measured(self) -> set[str]:
        """Every id with an entry, as a row or as a member of a column (read-only view)."""
        return self._measured

    def rows(self) -> list[str]:
        """Every row id with a direct entry, in first-added order."""
        return list(dict.fromkeys(row for row, _ in self._direct))

    def entries(self) -> Iterator[tuple[str, str, PayoffEntry]]:
        """(row, column, entry) for every direct entry, in first-added order."""
        for (row, column), entry in self._direct.items():
            yield row, column, entry

    def __len__(self) -> int:
        return len(self._direct)

    def matrix(self, row_ids: Sequence[str], column_ids: Sequence[str], field: str = "score",
               antisymmetric_fill: bool = False) -> np.ndarray:
        """float64 [rows, columns] of the pairwise entries' `field`; NaN where missing.

        `field` is one of MATRIX_FIELDS. With `antisymmetric_fill`, a missing (or NaN) cell (i, j)
        is read from the entry (column j, row i) when there is one, as a two-player zero-sum game
        would have it: score -> 1 - score, value -> -value, return_mean <-> opponent_return_mean,
        games -> games; and a diagonal cell still missing is self-play: 0.5 for score, 0 for value.
        """
        if field not in MATRIX_FIELDS:
            raise ValueError(f"payoff matrix field must be one of {', '.join(MATRIX_FIELDS)}, got {field!r}")
        out = np.full((len(row_ids), len(column_ids)), np.nan, dtype=np.float64)
        for i, row in enumerate(row_ids):
            for j, column in enumerate(column_ids):
                entry = self._pairwise.get((row, column))
                value = float(getattr(entry, field)) if entry is not None else math.nan
                if antisymmetric_fill and math.isnan(value):
                    value = self._mirrored(row, column, field)
                out[i, j] = value
        return out

    def _mirrored(self, row: str, column: str, field: str) -> float:
        """Cell (row, column) read from the entry (column, row) of a zero-sum game; self-play on the diagonal."""
        mirror = self._pairwise.get((column, row))
        value = math.nan
        if mirror is not None:
            if field == "score":
                value = 1.0 - mirror.score
            elif field == "value":
                value = -mirror.value
            elif field == "return_mean":
                value = mirror.opponent_return_mean
            elif field == "opponent_return_mean":
                value = mirror.return_mean
            else:
                value = float(mirror.games)
        if math.isnan(value) and row == column:
            value = {"score": 0.5, "value": 0.0}.get(field, math.nan)
        return value

    # ---- checkpoint state ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Every direct and pairwise entry (insertion order), as JSON data (NaN kept as NaN)."""
        return {"direct": [[row, col, asdict(e)] for (row, col), e in self._direct.items()],
                "pairwise": [[row, col, asdict(e)] for (row, col), e in self._pairwise.items()]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PayoffTable:
        """The table `to_state` described."""
        table = cls()
        for row, col, entry in state["direct"]:
            table._direct[(str(row), str(col))] = PayoffEntry(**entry)
            table._measured.update((str(row), *column_members(str(col))))
        for row, col, entry in state["pairwise"]:
            table._pairwise[(str(row), str(col))] = PayoffEntry(**entry)
            table._index_pair(str(row), str(col))
        return table
