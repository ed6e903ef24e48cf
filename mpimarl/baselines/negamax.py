"""A negamax (alpha-beta) search player for PettingZoo's connect_four_v3, on bitboards.

The board is two Python ints in the classic 7 x (6 + 1) layout: bit ``7 * column + height`` is the
cell ``height`` rows above the bottom of ``column``; the seventh bit of each column stays empty so
that shifts never carry a line from one column into the next. ``current`` holds the pieces of the
side to move, ``occupied`` every piece; a move is the lowest empty cell of a column,
``(occupied + BOTTOM) & column``.

The search is plain negamax with alpha-beta pruning over ``depth`` plies, with

* exact tactics at every node: a side that can complete a line now wins (``WIN - ply``, so nearer
  wins score higher), a side facing two immediate threats loses, a side facing one must block it,
  and no side plays directly below a cell where the opponent would complete a line;
* at the horizon, a positional evaluation: every line of four that one side could still complete
  counts for that side, weighted by how many of its pieces it already holds, plus a bonus per piece
  in the centre columns;
* move ordering: the best move the transposition table remembers for the position first, then the
  columns from the centre outwards;
* a transposition table keyed by the position. An entry's bound is reused only by a search of the
  same remaining depth, so a move's value is a function of the position and the depth alone, never
  of what was searched before: a depth-d player is the same player in every game.

Among the root moves whose values lie within ``margin`` evaluation points of the best (exactly the
best when that is a proven win or loss) the policy's `numpy.random.Generator` picks one, so games
against one opponent vary; ``margin=0`` keeps exact ties only.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mpimarl.baselines.connect_four import COLUMNS, ROWS, board_planes, check_space

HEIGHT = ROWS + 1
"""Bits per column: six cells and an always-empty sentinel."""
BOTTOM = sum(1 << (c * HEIGHT) for c in range(COLUMNS))
"""The bottom cell of every column."""
BOARD = BOTTOM * ((1 << ROWS) - 1)
"""Every cell of the board (no sentinels)."""
COLUMN_MASKS = tuple(((1 << ROWS) - 1) << (c * HEIGHT) for c in range(COLUMNS))
"""The six cells of each column."""
CENTRE_ORDER = (3, 2, 4, 1, 5, 0, 6)
"""Columns from the centre outwards: the default move order."""

WIN = 1_000_000
"""Score of winning with the next move at the root; a win at ply p scores ``WIN - p``."""
MATE = WIN - 1_000
"""Scores beyond +-MATE are proven wins or losses."""
LINE_WEIGHTS = (0, 1, 8, 40)
"""Evaluation weight of an open line holding 0, 1, 2 or 3 pieces of one side (and none of the other)."""
CENTRE_WEIGHTS = (0, 1, 2, 4, 2, 1, 0)
"""Evaluation bonus per piece in each column."""
TABLE_LIMIT = 200_000
"""Transposition table entries kept before the table is cleared (about 50 MB at the limit)."""

EXACT, LOWER, UPPER = 0, 1, 2


def _lines() -> tuple[int, ...]:
    """The 69 lines of four as bitboards."""
    lines = []
    for dc, dh in ((1, 0), (0, 1), (1, 1), (1, -1)):
        for c in range(COLUMNS):
            for h in range(ROWS):
                cells = [(c + i * dc, h + i * dh) for i in range(4)]
                if all(0 <= cc < COLUMNS and 0 <= hh < ROWS for cc, hh in cells):
                    lines.append(sum(1 << (cc * HEIGHT + hh) for cc, hh in cells))
    return tuple(lines)


LINES = _lines()
_CENTRE_MASKS = tuple((COLUMN_MASKS[c], CENTRE_WEIGHTS[c]) for c in range(COLUMNS) if CENTRE_WEIGHTS[c])
# Bit weights of the observation's cells: (row r from the top, column c) -> bit 7c + (5 - r).
_OBS_BITS = np.array([1 << (c * HEIGHT + ROWS - 1 - r) for r in range(ROWS) for c in range(COLUMNS)], np.int64)


def winning_cells(pieces: int, occupied: int) -> int:
    """Empty cells (reachable or not) where one more piece of `pieces` completes a line of four."""
    out = (pieces << 1) & (pieces << 2) & (pieces << 3)  # vertical: only upwards
    for step in (HEIGHT, HEIGHT - 1, HEIGHT + 1):  # horizontal and both diagonals
        pair = (pieces << step) & (pieces << 2 * step)
        out |= pair & (pieces << 3 * step)
        out |= pair & (pieces >> step)
        pair = (pieces >> step) & (pieces >> 2 * step)
        out |= pair & (pieces << step)
        out |= pair & (pieces >> 3 * step)
    return out & (BOARD ^ occupied)


def has_four(pieces: int) -> bool:
    """Whether `pieces` contain a line of four."""
    for step in (1, HEIGHT, HEIGHT - 1, HEIGHT + 1):
        pair = pieces & (pieces >> step)
        if pair & (pair >> 2 * step):
            return True
    return False


def evaluate(own: int, other: int) -> int:
    """Positional score of the side holding `own`: open lines weighted by its pieces in them, minus
    the same for `other`, plus the centre bonus of each side's pieces."""
    score = 0
    weights = LINE_WEIGHTS
    for line in LINES:
        mine = line & own
        theirs = line & other
        if not theirs:
            if mine:
                score += weights[mine.bit_count()]
        elif not mine:
            score -= weights[theirs.bit_count()]
    for mask, weight in _CENTRE_MASKS:
        score += weight * ((own & mask).bit_count() - (other & mask).bit_count())
    return score


def observation_bitboards(obs: np.ndarray) -> tuple[list[int], list[int]]:
    """(own pieces, opponent's pieces) of every observation of a (B, 84) batch, as bitboards."""
    own, opponent = board_planes(obs)
    own_bits = (own > 0).astype(np.int64) @ _OBS_BITS
    opponent_bits = (opponent > 0).astype(np.int64) @ _OBS_BITS
    return [int(x) for x in own_bits], [int(x) for x in opponent_bits]


class NegamaxSearch:
    """Depth-limited negamax with alpha-beta pruning and a transposition table (see the module)."""

    def __init__(self, depth: int) -> None:
        """A search over `depth` plies."""
        self.depth = depth
        self.table: dict[int, tuple[int, int, int, int]] = {}
        """Position key -> (remaining depth, bound kind, value relative to the node, best move bit)."""
        self.nodes = 0

    def root_values(self, current: int, occupied: int, columns: list[int], margin: int = 0) -> dict[int, int]:
        """Value of each column of `columns` for the side to move: exact for every column within
        `margin` of the best one (within 0 when the best is a proven win or loss); the others are
        upper bounds more than `margin` below it."""
        if len(self.table) > TABLE_LIMIT:
            self.table.clear()
        values: dict[int, int] = {}
        best = -WIN - 1
        possible = (occupied + BOTTOM) & BOARD
        wins = winning_cells(current, occupied) & possible
        for column in sorted(columns, key=CENTRE_ORDER.index):
            move = possible & COLUMN_MASKS[column]
            if move & wins:
                values[column] = best = WIN
                continue
            # A window just below the best so far (less the margin): a move that good gets its exact value.
            floor = best - 1 - (margin if -MATE <= best <= MATE else 0)
            value = -self._search(current ^ occupied, occupied | move, self.depth - 1, -WIN - 1, -floor, 1)
            values[column] = value
            best = max(best, value)
        return values

    def _search(self, current: int, occupied: int, depth: int, alpha: int, beta: int, ply: int) -> int:
        """Negamax value of the position for the side to move (`current`), within (alpha, beta)."""
        self.nodes += 1
        opponent = current ^ occupied
        possible = (occupied + BOTTOM) & BOARD
        if not possible:
            return 0  # a full board is a draw
        if winning_cells(current, occupied) & possible:
            return WIN - ply
        threats = winning_cells(opponent, occupied)
        forced = possible & threats
        if depth <= 0 and not forced:
            return evaluate(current, opponent)
        if forced:
            if forced & (forced - 1):
                return -(WIN - ply - 1)  # two threats: one of them completes next move
            possible = forced
        possible &= ~(threats >> 1)  # a piece below an opponent's threat lets it complete
        if not possible:
            return -(WIN - ply - 1)
        key = current + occupied
        entry = self.table.get(key)
        first = 0
        if entry is not None:
            stored_depth, kind, stored, first = entry
            if stored_depth == depth:
                value = _from_table(stored, ply)
                if kind == EXACT:
                    return value
                if kind == LOWER and value >= beta:
                    return value
                if kind == UPPER and value <= alpha:
                    return value
        original_alpha = alpha
        best, best_move = -WIN - 1, 0
        for move in _ordered(possible, first):
            value = -self._search(opponent, occupied | move, depth - 1, -beta, -alpha, ply + 1)
            if value > best:
                best, best_move = value, move
                if value > alpha:
                    alpha = value
                    if alpha >= beta:
                        break
        kind = UPPER if best <= original_alpha else LOWER if best >= beta else EXACT
        self.table[key] = (depth, kind, _to_table(best, ply), best_move)
        return best


def _ordered(possible: int, first: int) -> list[int]:
    """The move bits of `possible`: `first` (if legal) and then from the centre outwards."""
    moves = [first] if first & possible else []
    for column in CENTRE_ORDER:
        move = possible & COLUMN_MASKS[column]
        if move and move != first:
            moves.append(move)
    return moves


def _to_table(value: int, ply: int) -> int:
    """A win/loss score relative to the node (distance from it), as the table keeps it."""
    if value > MATE:
        return value + ply
    if value < -MATE:
        return value - ply
    return value


def _from_table(value: int, ply: int) -> int:
    if value > MATE:
        return value - ply
    if value < -MATE:
        return value + ply
    return value


class NegamaxParams(BaseModel):
    """Parameters of the negamax player (`kwargs` of a baseline, ``negamax:depth=4`` on the CLI)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    depth: int = Field(
        default=4,
        ge=1,
        le=12,
        description="Plies searched (1-12). Against tactical: about 7,400 games per CPU-minute at depth 4, "
        "2,800 at 5, each further ply about 3 times slower.",
    )
    margin: int = Field(
        default=2,
        ge=0,
        description="Moves whose value is within this many evaluation points of the best count as equally "
        "good (one is drawn at random; never for proven wins or losses): 0 keeps exact ties only, the "
        "default 2 (an open line holding one piece is worth 1) makes games against one opponent vary.",
    )
    epsilon: float = Field(default=0.0, ge=0.0, le=1.0,
                           description="Probability of a uniformly random legal column instead of the search's "
                           "(0: always search): a knob for a ladder of judges between random and full strength.")


class NegamaxPlayer:
    """Connect four: alpha-beta search of `depth` plies (default 4) with a positional evaluation.

    Takes an immediate win, blocks an immediate loss, and breaks ties between equally good columns
    at random. See `mpimarl.baselines.negamax` for the search and docs/search_players.md for its
    measured strength and speed.
    """

    Params: ClassVar[type[BaseModel]] = NegamaxParams

    def __init__(self, action_space: gymnasium.spaces.Space, rng: np.random.Generator, depth: int = 4,
                 margin: int = 2, epsilon: float = 0.0) -> None:
        """A player for connect_four_v3's Discrete(7) columns, drawing ties (and `epsilon`'s random
        columns) from `rng`."""
        check_space(action_space, "negamax")
        self.params = NegamaxParams(depth=depth, margin=margin, epsilon=float(epsilon))
        self.rng = rng
        self.search = NegamaxSearch(self.params.depth)

    @property
    def depth(self) -> int:
        """Plies searched."""
        return self.params.depth

    def choose(self, own: int, opponent: int, legal: list[int]) -> int:
        """The column to play among `legal` with `own` to move against `opponent`'s pieces: with
        probability `epsilon` a uniformly random one, else a random one of the immediate wins, else of
        the moves within `margin` of the best search value (the best only, when that is a proven win
        or loss)."""
        if self.params.epsilon > 0 and self.rng.random() < self.params.epsilon:
            return int(legal[int(self.rng.integers(len(legal)))])
        occupied = own | opponent
        possible = (occupied + BOTTOM) & BOARD
        wins = winning_cells(own, occupied) & possible
        candidates = [c for c in legal if wins & COLUMN_MASKS[c]]
        if not candidates:
            margin = self.params.margin
            values = self.search.root_values(own, occupied, legal, margin)
            best = max(values.values())
            floor = best - (margin if -MATE <= best <= MATE else 0)
            candidates = [c for c in legal if values[c] >= floor]
        if len(candidates) == 1:
            return candidates[0]
        return int(candidates[int(self.rng.integers(len(candidates)))])

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """One column per board of the batch."""
        own, opponent = observation_bitboards(obs)
        out = np.empty(len(own), np.int64)
        for i, (mine, theirs) in enumerate(zip(own, opponent)):
            possible = ((mine | theirs) + BOTTOM) & BOARD
            legal = [c for c in range(COLUMNS) if possible & COLUMN_MASKS[c] and (mask is None or mask[i, c])]
            if not legal:
                raise ValueError(f"observation {i} of the batch has no legal column (board full or all masked)")
            out[i] = self.choose(mine, theirs, legal)
        return out
