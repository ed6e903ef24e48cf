"""PayoffTable: accumulation, pairwise entries of several-seat columns, exact entries, matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpimarl.league.payoff import PayoffEntry, PayoffTable, wilson_interval


def test_wilson_interval_matches_the_closed_form_and_stays_in_the_unit_interval() -> None:
    # 8 of 10, z = 1.96: the textbook values.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = wilson_interval(5, 5)
    assert 0.0 < low < 1.0 and high == 1.0
    low, high = wilson_interval(2.5, 5)  # fractional successes (draws count half)
    assert low < 0.5 < high and 0.5 - low == pytest.approx(high - 0.5)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_wilson_interval_narrows_with_more_games() -> None:
    small = wilson_interval(6, 10)
    large = wilson_interval(600, 1000)
    assert large[1] - large[0] < small[1] - small[0]


@pytest.mark.parametrize("successes, n", [(11, 10), (-1, 10), (float("nan"), 10)])
def test_wilson_interval_rejects_impossible_counts(successes: float, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(successes, n)


def test_empty_entry_has_nan_statistics() -> None:
    entry = PayoffEntry()
    assert math.isnan(entry.score) and math.isnan(entry.return_mean) and math.isnan(entry.value)
    assert all(math.isnan(x) for x in entry.interval)


def test_add_accumulates_counts_returns_and_scores() -> None:
    table = PayoffTable()
    table.add("player-0@1", "player-0@0", 3, 1, 0, 6.0, -6.0)
    entry = table.add("player-0@1", "player-0@0", 1, 1, 2, -1.0, 1.0)
    assert (entry.games, entry.wins, entry.draws, entry.losses) == (8, 4, 2, 2)
    assert entry.score == pytest.approx(5 / 8)
    assert entry.value == pytest.approx(5 / 8 - 0.5)
    assert entry.return_mean == pytest.approx(5 / 8)
    assert entry.opponent_return_mean == pytest.approx(-5 / 8)
    low, high = entry.interval
    assert low < entry.score < high
    assert table.get("player-0@1", "player-0@0") is entry
    assert table.pair("player-0@1", "player-0@0").games == 8
    assert len(table) == 1 and table.rows() == ["player-0@1"]
    assert [(r, c) for r, c, _ in table.entries()] == [("player-0@1", "player-0@0")]


def test_several_seat_column_feeds_each_distinct_member_once_per_game() -> None:
    table = PayoffTable()
    column = "player-0@3+player-0@3+random"
    entry = table.add("player-0@5", column, 2, 0, 1, 3.0, 0.0)
    assert entry.games == 3
    assert table.get("player-0@5", "player-0@3") is None  # no direct single-member entry
    for member in ("player-0@3", "random"):
        pair = table.pair("player-0@5", member)
        assert pair is not None and (pair.games, pair.wins, pair.losses) == (3, 2, 1)
    # a later duel against one member adds to that member's pairwise entry only
    table.add("player-0@5", "random", 1, 0, 0, 1.0, -1.0)
    assert table.pair("player-0@5", "random").games == 4
    assert table.pair("player-0@5", "player-0@3").games == 3
    assert table.get("player-0@5", "random").games == 1
    assert len(table) == 2


def test_set_exact_overwrites_with_expected_values() -> None:
    table = PayoffTable()
    table.add("player-0@1", "random", 5, 0, 5, 0.0, 0.0)
    entry = table.set_exact("player-0@1", "random", 0.25, -0.25)
    assert entry.exact and entry.games == 0
    assert entry.value == 0.25 and entry.return_mean == 0.25 and entry.opponent_return_mean == -0.25
    assert table.pair("player-0@1", "random").value == 0.25


def test_matrix_reads_fields_and_leaves_missing_cells_nan() -> None:
    table = PayoffTable()
    table.add("a@1", "a@0", 3, 0, 1, 2.0, -2.0)
    m = table.matrix(["a@1", "a@0"], ["a@0", "a@1"], "score")
    assert m.dtype == np.float64 and m.shape == (2, 2)
    assert m[0, 0] == pytest.approx(0.75)
    assert np.isnan(m[0, 1]) and np.isnan(m[1, 0]) and np.isnan(m[1, 1])
    assert table.matrix(["a@1"], ["a@0"], "games")[0, 0] == 4
    assert table.matrix(["a@1"], ["a@0"], "return_mean")[0, 0] == pytest.approx(0.5)


def test_antisymmetric_fill_mirrors_the_opposite_entry_and_self_play() -> None:
    table = PayoffTable()
    table.add("a@1", "a@0", 3, 0, 1, 2.0, -6.0)
    ids = ["a@0", "a@1"]
    score = table.matrix(ids, ids, "score", antisymmetric_fill=True)
    np.testing.assert_allclose(score, [[0.5, 0.25], [0.75, 0.5]])
    value = table.matrix(ids, ids, "value", antisymmetric_fill=True)
    np.testing.assert_allclose(value, -value.T)
    np.testing.assert_allclose(value, [[0.0, -0.25], [0.25, 0.0]])
    returns = table.matrix(ids, ids, "return_mean", antisymmetric_fill=True)
    assert returns[0, 1] == pytest.approx(-1.5)  # a@0's return is the mirrored entry's opponent return
    assert np.isnan(returns[0, 0])
    assert table.matrix(ids, ids, "games", antisymmetric_fill=True)[0, 1] == 4


def test_antisymmetric_fill_keeps_an_entry_that_exists() -> None:
    table = PayoffTable()
    table.add("a@1", "a@0", 3, 0, 1, 0.0, 0.0)
    table.add("a@0", "a@1", 0, 0, 2, 0.0, 0.0)
    m = table.matrix(["a@0"], ["a@1"], "score", antisymmetric_fill=True)
    assert m[0, 0] == 0.0  # its own entry, not 1 - 0.75


def test_bad_input_names_the_problem() -> None:
    table = PayoffTable()
    with pytest.raises(ValueError, match="wins"):
        table.add("a@1", "a@0", -1, 0, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="return_sum"):
        table.add("a@1", "a@0", 1, 0, 0, math.nan, 0.0)
    with pytest.raises(ValueError, match="empty member"):
        table.add("a@1", "a@0++random", 1, 0, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="field"):
        table.matrix(["a@1"], ["a@0"], "elo")
    assert len(table) == 0
