"""The negamax search player: bitboards, known positions, random positions, strength, parameters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpimarl.algos.networks import RandomPolicy
from mpimarl.analysis import load_run
from mpimarl.baselines import load_scripted, parse_policy_spec, policy_parameters
from mpimarl.baselines.connect_four import LINES as LINE_MATRIX
from mpimarl.baselines.negamax import (
    BOARD,
    BOTTOM,
    COLUMN_MASKS,
    LINES,
    NegamaxPlayer,
    evaluate,
    has_four,
    observation_bitboards,
    winning_cells,
)
from mpimarl.config import parse_config
from mpimarl.envs import resolve_env
from mpimarl.errors import ConfigError
from tests.conftest import CONFIGS, run_mpi

from .matches import connect_four_score
from .test_connect_four import board

SEVEN = gymnasium.spaces.Discrete(7)


def player(depth: int, seed: int = 0) -> NegamaxPlayer:
    return NegamaxPlayer(SEVEN, np.random.default_rng(seed), depth)


def picks(depth: int, obs: np.ndarray, tries: int = 30) -> set[int]:
    """Every column the depth-`depth` player picks for `obs` over `tries` copies (through load_scripted,
    so every action is also checked against the action space)."""
    policy = load_scripted("negamax", SEVEN, 0, {"depth": depth})
    return set(policy.act(np.tile(obs, (tries, 1)), None).tolist())


# ---- a position as move sequences, and a plain reference search -----------------------------------


def play_moves(columns: list[int]) -> tuple[int, int] | None:
    """(pieces of the side to move, occupied) after `columns` from the empty board; None when a move
    is illegal or the game ended before the last move."""
    current, occupied = 0, 0
    for column in columns:
        move = ((occupied + BOTTOM) & BOARD) & COLUMN_MASKS[column]
        if not move or occupied == BOARD:
            return None
        mine = current | move
        occupied |= move
        if has_four(mine):
            return None
        current = mine ^ occupied
    return current, occupied


def observation(current: int, occupied: int) -> np.ndarray:
    """The adapter's flat observation of a bitboard position (plane 0: the side to move)."""
    cells = np.zeros((6, 7, 2), np.float32)
    for c in range(7):
        for h in range(6):
            bit = 1 << (c * 7 + h)
            if occupied & bit:
                cells[5 - h, c, 0 if current & bit else 1] = 1
    return cells.ravel()


def reference(current: int, occupied: int, plies: int) -> int:
    """Plain minimax without pruning or tactics: +1 if the side to move forces a win within `plies`
    plies, -1 if the opponent does, else 0."""
    if plies == 0:
        return 0
    possible = (occupied + BOTTOM) & BOARD
    best = -1 if possible else 0
    for column in range(7):
        move = possible & COLUMN_MASKS[column]
        if not move:
            continue
        if has_four(current | move):
            return 1
        best = max(best, -reference(current ^ occupied, occupied | move, plies - 1))
        if best == 1:
            return 1
    return best


def move_value(current: int, occupied: int, column: int, plies: int) -> int:
    """`reference` of playing `column`: +1 a forced win within `plies` plies (this move included)."""
    move = ((occupied + BOTTOM) & BOARD) & COLUMN_MASKS[column]
    if has_four(current | move):
        return 1
    return -reference(current ^ occupied, occupied | move, plies - 1)


# ---- bitboards ---------------------------------------------------------------------------------


def test_bitboards_match_the_observation_and_the_69_lines() -> None:
    assert len(LINES) == 69 and all(line.bit_count() == 4 for line in LINES)
    obs = board(own=[(5, 0), (4, 0), (5, 3)], opponent=[(5, 6), (3, 0)])
    own, opponent = observation_bitboards(obs[None])
    assert own == [(1 << 0) | (1 << 1) | (1 << 21)] and opponent == [(1 << 42) | (1 << 2)]
    # Every line of the numpy player's incidence matrix is one of the bitboard lines.
    as_bits = {sum(1 << ((i % 7) * 7 + 5 - i // 7) for i in np.flatnonzero(row)) for row in LINE_MATRIX}
    assert as_bits == set(LINES)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=30))
def test_winning_cells_and_evaluation_agree_with_brute_force(columns: list[int]) -> None:
    position = play_moves(columns)
    if position is None:
        return
    current, occupied = position
    opponent = current ^ occupied
    for pieces in (current, opponent):
        brute = 0
        for cell in range(49):
            bit = 1 << cell
            if bit & BOARD and not bit & occupied and has_four(pieces | bit):
                brute |= bit
        assert winning_cells(pieces, occupied) == brute
    assert evaluate(current, opponent) == -evaluate(opponent, current)


# ---- known positions -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_takes_an_immediate_win_before_blocking(depth: int) -> None:
    row = board(own=[(5, 0), (5, 1), (5, 2)], opponent=[(4, 0), (4, 1), (3, 0)])
    assert picks(depth, row) == {3}
    both = board(own=[(5, 0), (5, 1), (5, 2)], opponent=[(5, 4), (4, 4), (3, 4)])
    assert picks(depth, both) == {3}  # win in column 3 rather than block column 4
    diagonal = board(own=[(5, 0), (4, 1), (3, 2), (5, 3)], opponent=[(5, 1), (5, 2), (4, 2), (4, 3), (3, 3)])
    assert picks(depth, diagonal) == {3}  # (2, 3) completes the diagonal


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_blocks_an_immediate_loss(depth: int) -> None:
    vertical = board(own=[(5, 0), (5, 1), (4, 0)], opponent=[(5, 4), (4, 4), (3, 4)])
    assert picks(depth, vertical) == {4}
    # The opponent's three on the bottom row needs column 3.
    row = board(own=[(5, 0), (5, 1)], opponent=[(5, 4), (5, 5), (5, 6)])
    assert picks(depth, row) == {3}


@pytest.mark.parametrize("depth", [2, 4, 5])
def test_makes_an_open_ended_three_a_forced_win(depth: int) -> None:
    """Two pieces in the middle of the empty bottom row: either neighbour makes _XXX_, two threats."""
    obs = board(own=[(5, 2), (5, 3)], opponent=[(4, 2), (4, 3)])
    assert picks(depth, obs) <= {1, 4}


@pytest.mark.parametrize("depth", [4, 5])
@pytest.mark.parametrize(("moves", "winning"), [
    ([3, 4, 6, 0, 3, 3, 0, 0, 4, 6, 5, 1, 3, 6], {5}),
    ([3, 3, 1, 5, 6, 2, 2, 2, 0, 1, 4, 4, 5], {3}),
])  # fmt: skip
def test_finds_a_win_three_own_moves_away(depth: int, moves: list[int], winning: set[int]) -> None:
    """Positions found by the plain reference search: a forced win within 5 plies (our third move
    wins) and none within 3, and only the `winning` columns force it."""
    position = play_moves(moves)
    assert position is not None
    current, occupied = position
    assert reference(current, occupied, 3) == 0 and reference(current, occupied, 5) == 1
    assert {c for c in range(7) if move_value(current, occupied, c, 5) == 1} == winning
    assert picks(depth, observation(current, occupied), tries=10) == winning


# ---- random positions ----------------------------------------------------------------------------


def _block_loses(current: int, occupied: int, column: int) -> bool:
    """Whether blocking in `column` hands the opponent a win right above it (both cells its threats):
    then every move loses and the search may play any of them (hypothesis found one, 2026-12-07)."""
    move = ((occupied + BOTTOM) & BOARD) & COLUMN_MASKS[column]
    after = occupied | move
    opponent = current ^ occupied
    return bool(winning_cells(opponent, after) & ((after + BOTTOM) & BOARD))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 6), min_size=4, max_size=36), st.integers(1, 4), st.integers(0, 2**32 - 1))
@example(columns=[3, 2, 5, 2, 2, 3, 2, 0, 6, 0, 3], depth=1, seed=0)  # the block square's upper one wins too
def test_random_positions_legal_moves_wins_and_blocks(columns: list[int], depth: int, seed: int) -> None:
    """Never an illegal move (masks included); never a missed win; never a missed forced block."""
    position = play_moves(columns)
    if position is None or position[1] == BOARD:
        return
    current, occupied = position
    opponent = current ^ occupied
    possible = (occupied + BOTTOM) & BOARD
    legal = [c for c in range(7) if possible & COLUMN_MASKS[c]]
    rng = np.random.default_rng(seed)
    mask = np.zeros((3, 7), bool)
    for row in range(3):  # a random non-empty subset of the legal columns
        mask[row, rng.choice(legal, size=int(rng.integers(1, len(legal) + 1)), replace=False)] = True
    obs = np.tile(observation(current, occupied), (3, 1))
    chosen = load_scripted("negamax", SEVEN, seed, {"depth": depth}).act(obs, mask)
    assert mask[np.arange(3), chosen].all()
    column = int(player(depth, seed).act(obs[:1], None)[0])
    wins = {c for c in legal if winning_cells(current, occupied) & possible & COLUMN_MASKS[c]}
    blocks = {c for c in legal if winning_cells(opponent, occupied) & possible & COLUMN_MASKS[c]}
    if wins:
        assert column in wins
    elif len(blocks) == 1 and not _block_loses(current, occupied, next(iter(blocks))):
        assert column in blocks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 6), min_size=6, max_size=30), st.integers(0, 1000))
def test_random_positions_forced_wins_within_the_horizon_are_found(columns: list[int], seed: int) -> None:
    """Where plain minimax finds a forced win within 3 plies, the depth-3 player plays one."""
    position = play_moves(columns)
    if position is None or position[1] == BOARD:
        return
    current, occupied = position
    if reference(current, occupied, 3) != 1:
        return
    column = int(player(3, seed).act(observation(current, occupied)[None], None)[0])
    assert move_value(current, occupied, column, 3) == 1


# ---- games -----------------------------------------------------------------------------------------


def self_play(a: NegamaxPlayer, b: NegamaxPlayer) -> tuple[int, tuple[int, ...]]:
    """One game on bitboards, `a` first: (+1 a wins, -1 b wins, 0 draw, the columns played)."""
    current, occupied, moves = 0, 0, []
    for ply in range(42):
        mover = a if ply % 2 == 0 else b
        possible = (occupied + BOTTOM) & BOARD
        column = mover.choose(current, occupied ^ current, [c for c in range(7) if possible & COLUMN_MASKS[c]])
        moves.append(column)
        move = possible & COLUMN_MASKS[column]
        mine = current | move
        occupied |= move
        if has_four(mine):
            return (1 if ply % 2 == 0 else -1), tuple(moves)
        current = mine ^ occupied
    return 0, tuple(moves)


def test_games_vary_and_repeat_with_the_seed() -> None:
    """Ties are broken by the policy's rng: games differ between seeds and repeat for one seed."""
    games = [self_play(player(2, seed), player(2, 100 + seed))[1] for seed in range(12)]
    assert len(set(games)) >= 6
    assert self_play(player(2, 3), player(2, 103))[1] == games[3]


def match_score(a_depth: int, b_depth: int, games: int) -> float:
    """Depth a's score against depth b on bitboards, the first move alternating."""
    a, b = player(a_depth, 1), player(b_depth, 2)
    total = 0.0
    for k in range(games):
        result = self_play(a, b)[0] if k % 2 == 0 else -self_play(b, a)[0]
        total += (result + 1) / 2
    return total / games


@pytest.fixture(scope="module")
def factory() -> Callable[[], object]:
    return resolve_env("pettingzoo.classic.connect_four_v3", {})


def test_depth_2_beats_depth_1_and_the_tactical_player_quickly(factory: Callable[[], object]) -> None:
    assert match_score(2, 1, 40) >= 0.6
    tactical = connect_four_score(factory, load_scripted("negamax", SEVEN, 5, {"depth": 2}),
                                  load_scripted("tactical", SEVEN, 6), 40, seed=40_000)
    assert tactical["score"] >= 0.85, tactical


@pytest.mark.slow
def test_depth_4_beats_depth_1_and_the_tactical_player(factory: Callable[[], object]) -> None:
    assert match_score(4, 1, 100) >= 0.75
    tactical = connect_four_score(factory, load_scripted("negamax", SEVEN, 1, {"depth": 4}),
                                  load_scripted("tactical", SEVEN, 2), 100, seed=20_000)
    assert tactical["score"] >= 0.9, tactical
    random = connect_four_score(factory, load_scripted("negamax", SEVEN, 3, {"depth": 2}),
                                RandomPolicy(SEVEN, np.random.default_rng(4)), 100, seed=30_000)
    assert random["score"] >= 0.97, random


def test_epsilon_grades_the_player_between_random_and_full_strength(factory: Callable[[], object]) -> None:
    def vs_tactical(epsilon: float, seed: int) -> float:
        me = load_scripted("negamax", SEVEN, seed, {"depth": 2, "epsilon": epsilon})
        return connect_four_score(factory, me, load_scripted("tactical", SEVEN, seed + 1), 100, seed=40_000)["score"]

    full, half, noise = vs_tactical(0.0, 5), vs_tactical(0.5, 7), vs_tactical(1.0, 9)
    assert noise < 0.2 < half < full - 0.15, (full, half, noise)  # epsilon 1 plays uniformly at random
    with pytest.raises(ConfigError, match="epsilon"):
        parse_config({**CONFIG, "baselines": [{"policy": "negamax", "kwargs": {"epsilon": 1.5}}]})


# ---- parameters --------------------------------------------------------------------------------------


def test_depth_is_listed_and_validated() -> None:
    listed = {p.name: p for p in policy_parameters("negamax")}
    assert {name: p.default for name, p in listed.items()} == {"depth": 4, "margin": 2, "epsilon": 0.0}
    assert all(p.description for p in listed.values())
    with pytest.raises(ConfigError, match=r"margin=-1.*greater than or equal to 0"):
        load_scripted("negamax", SEVEN, 0, {"depth": 2, "margin": -1})
    assert load_scripted("negamax", SEVEN, 0).label.startswith("'negamax'")
    for bad in (0, -2, 2.5, "4", True, None):
        with pytest.raises(ConfigError, match=rf"negamax.*depth={bad!r}"):
            load_scripted("negamax", SEVEN, 0, {"depth": bad})
    with pytest.raises(ConfigError, match=r"no parameter 'dpeth'.*did you mean 'depth'"):
        load_scripted("negamax", SEVEN, 0, {"dpeth": 4})
    with pytest.raises(ConfigError, match=r"Discrete\(7\)"):
        load_scripted("negamax", gymnasium.spaces.Discrete(3), 0, {"depth": 2})


def test_cli_spec_parsing() -> None:
    assert parse_policy_spec("negamax") == ("negamax", {})
    assert parse_policy_spec("negamax:depth=4") == ("negamax", {"depth": 4})
    assert parse_policy_spec("pkg.mod:Player:depth=2:name=x") == ("pkg.mod:Player", {"depth": 2, "name": "x"})
    assert parse_policy_spec("pkg.mod:Player") == ("pkg.mod:Player", {})
    for bad in ("negamax:4", "negamax:depth=", "negamax:depth=2:depth=3"):
        with pytest.raises(ConfigError, match="negamax"):
            parse_policy_spec(bad)


CONFIG: dict = {
    "env": {"id": "pettingzoo.classic.connect_four_v3"},
    "task": {"roles": [{"name": "player", "agents": "player_.*", "team": False}]},
}  # fmt: skip


def test_config_baselines_take_checked_kwargs() -> None:
    baselines = [{"policy": "negamax", "kwargs": {"depth": 2}, "train_fraction": 0.25},
                 {"name": "deep", "policy": "negamax", "kwargs": {"depth": 5}}]
    config = parse_config({**CONFIG, "baselines": baselines})
    assert [(b.name, b.kwargs) for b in config.baselines] == [("negamax_depth2", {"depth": 2}), ("deep", {"depth": 5})]
    with pytest.raises(ConfigError, match=r"baselines\[0\] \(negamax_depth0\)\.kwargs.*depth=0.*greater than"):
        parse_config({**CONFIG, "baselines": [{"policy": "negamax", "kwargs": {"depth": 0}}]})
    with pytest.raises(ConfigError, match=r"baselines\[0\].*no parameter 'width'"):
        parse_config({**CONFIG, "baselines": [{"name": "n", "policy": "negamax", "kwargs": {"width": 3}}]})


@pytest.mark.mpi
@pytest.mark.slow
def test_negamax_is_a_training_opponent_and_an_evaluation_anchor(tmp_path: Path) -> None:
    """A config baseline with kwargs: trainers play it in training line-ups, rank 0 evaluates against it."""
    baselines = "[{policy: negamax, kwargs: {depth: 2}, train_fraction: 0.5}]"
    out = run_mpi(3, ["train", str(CONFIGS / "connect_four_league.yaml"), "--run-dir", str(tmp_path),
                      "--steps", "3000", "schedule.steps_per_generation=1500", f"baselines={baselines}",
                      "ppo.num_envs=4", "ppo.rollout_steps=512", "ppo.hidden=[32]", "evaluation.baseline_episodes=6",
                      "evaluation.pool_episodes=4", "evaluation.num_envs=4", "evaluation.par_episodes=20"], timeout=600)
    assert out.returncode == 0, out.stderr
    run = load_run(tmp_path / "run.h5")
    assert run.context().config.baselines[0].kwargs == {"depth": 2}
    against = run.matches[run.matches.opponent_id == "negamax_depth2"]
    assert {"training", "evaluation"} <= set(against.kind)
    evaluation = against[against.kind == "evaluation"]
    assert evaluation.episodes.sum() >= 6 and evaluation.wins.sum() <= evaluation.episodes.sum() // 3
