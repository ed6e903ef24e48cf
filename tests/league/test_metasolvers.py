"""Meta-game solvers: exact zero-sum Nash, max-entropy Nash, Nash averaging, replicator dynamics."""

from __future__ import annotations

import numpy as np
import pytest

from mpimarl.league.metasolvers import (
    max_entropy_nash,
    nash_average,
    replicator_dynamics,
    solve_meta_game,
    zero_sum_nash,
)

RPS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
# Rock-paper-scissors with rock beating scissors for 2 and paper beating rock for 1: for
# [[0, -x, y], [x, 0, -z], [-y, z, 0]] the Nash is proportional to (z, y, x) = (1, 2, 1).
BIASED_RPS = np.array([[0.0, -1.0, 2.0], [1.0, 0.0, -1.0], [-2.0, 1.0, 0.0]])
BIASED_NASH = np.array([0.25, 0.5, 0.25])


def test_rps_is_uniform_with_value_zero() -> None:
    p, q, value = zero_sum_nash(RPS)
    np.testing.assert_allclose(p, np.full(3, 1 / 3), atol=1e-8)
    np.testing.assert_allclose(q, np.full(3, 1 / 3), atol=1e-8)
    assert value == pytest.approx(0.0, abs=1e-9)


def test_matching_pennies() -> None:
    p, q, value = zero_sum_nash(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(p, [0.5, 0.5], atol=1e-8)
    np.testing.assert_allclose(q, [0.5, 0.5], atol=1e-8)
    assert value == pytest.approx(0.0, abs=1e-9)


def test_a_2x3_game_with_a_hand_computed_equilibrium() -> None:
    # Column 3 is dominated for the minimiser (above column 2 against both rows). On columns 1-2
    # the row player equalises 2 p1 - (1 - p1) = -p1 + (1 - p1), so p1 = 2/5; likewise q1 = 2/5;
    # value = 3 p1 - 1 = 1/5.
    a = np.array([[2.0, -1.0, 3.0], [-1.0, 1.0, 2.0]])
    p, q, value = zero_sum_nash(a)
    np.testing.assert_allclose(p, [0.4, 0.6], atol=1e-8)
    np.testing.assert_allclose(q, [0.4, 0.6, 0.0], atol=1e-8)
    assert value == pytest.approx(0.2, abs=1e-9)


def test_dominated_strategies_get_no_weight() -> None:
    # Row 3 is strictly dominated by row 1; RPS otherwise.
    a = np.vstack([RPS, RPS[0] - 0.5])
    p, q, value = zero_sum_nash(a)
    assert p[3] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(p[:3], np.full(3, 1 / 3), atol=1e-8)
    np.testing.assert_allclose(q, np.full(3, 1 / 3), atol=1e-8)
    assert value == pytest.approx(0.0, abs=1e-9)


def test_biased_rps_has_its_known_nash() -> None:
    p, q, value = zero_sum_nash(BIASED_RPS)
    np.testing.assert_allclose(p, BIASED_NASH, atol=1e-8)
    np.testing.assert_allclose(q, BIASED_NASH, atol=1e-8)
    assert value == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(max_entropy_nash(BIASED_RPS), BIASED_NASH, atol=1e-8)


def test_zero_sum_nash_rejects_bad_matrices() -> None:
    with pytest.raises(ValueError, match="2-D"):
        zero_sum_nash(np.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        zero_sum_nash(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite"):
        zero_sum_nash(np.array([[0.0, np.nan], [1.0, 0.0]]))


def test_max_entropy_splits_weight_between_copies() -> None:
    # Two identical rocks: every split of rock's 1/3 between them is an equilibrium.
    a = RPS[np.ix_([0, 0, 1, 2], [0, 0, 1, 2])]
    np.testing.assert_allclose(max_entropy_nash(a), [1 / 6, 1 / 6, 1 / 3, 1 / 3], atol=1e-7)


def test_max_entropy_degenerate_cases() -> None:
    np.testing.assert_allclose(max_entropy_nash(np.zeros((5, 5))), np.full(5, 0.2), atol=1e-9)
    dominant = np.array([[0.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    np.testing.assert_allclose(max_entropy_nash(dominant), [1.0, 0.0, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match="antisymmetric"):
        max_entropy_nash(np.array([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="square"):
        max_entropy_nash(np.zeros((2, 3)))


def test_max_entropy_is_an_equilibrium_on_64_strategies() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(16, 16))
    base -= base.T
    copies = np.concatenate([np.arange(16), rng.integers(0, 16, size=48)])
    a = base[np.ix_(copies, copies)]
    p = max_entropy_nash(a)
    assert p.min() >= 0.0 and p.sum() == pytest.approx(1.0)
    assert np.min(a.T @ p) > -1e-8  # no strategy beats p
    # the copies of each strategy share its weight in the 16-strategy game equally
    reference = max_entropy_nash(base)
    for k in range(16):
        np.testing.assert_allclose(p[copies == k], reference[k] / np.sum(copies == k), atol=1e-7)


def test_nash_average_is_invariant_to_duplicates() -> None:
    m = 0.5 + 0.5 * BIASED_RPS / 2  # scores in [0, 1], m + m.T = 1
    m = np.vstack([m, [0.2, 0.2, 0.2]])  # a fourth strategy that loses to all
    m = np.hstack([m, [[0.8], [0.8], [0.8], [0.5]]])
    rating, p = nash_average(m)
    np.testing.assert_allclose(p, [0.25, 0.5, 0.25, 0.0], atol=1e-7)
    assert rating[:3] == pytest.approx([0.0, 0.0, 0.0], abs=1e-7)
    assert rating[3] == pytest.approx(-0.3)
    # two more copies of paper (strategy 1)
    order = [0, 1, 2, 3, 1, 1]
    rating2, p2 = nash_average(m[np.ix_(order, order)])
    np.testing.assert_allclose(rating2[:4], rating, atol=1e-7)
    np.testing.assert_allclose(p2[[1, 4, 5]], np.full(3, 0.5 / 3), atol=1e-7)
    np.testing.assert_allclose(p2[[0, 2, 3]], p[[0, 2, 3]], atol=1e-7)


def test_nash_average_rejects_scores_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nash_average(np.array([[0.5, 2.0], [-1.0, 0.5]]))


def test_replicator_average_approaches_nash_and_is_deterministic() -> None:
    p, q = replicator_dynamics(BIASED_RPS)
    np.testing.assert_allclose(p, BIASED_NASH, atol=0.02)
    np.testing.assert_allclose(q, BIASED_NASH, atol=0.02)
    p2, q2 = replicator_dynamics(BIASED_RPS)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(q, q2)


def test_replicator_finds_a_pure_equilibrium_of_a_general_sum_game() -> None:
    # Prisoner's dilemma: defect (strategy 1) strictly dominates for both.
    a = np.array([[3.0, 0.0], [5.0, 1.0]])
    p, q = replicator_dynamics(a, a.T, iterations=2000, step=0.1)
    assert p[1] > 0.95 and q[1] > 0.95


def test_solve_meta_game_dispatches_and_validates() -> None:
    p, q = solve_meta_game(BIASED_RPS, "lp")
    np.testing.assert_allclose(p, BIASED_NASH, atol=1e-8)
    p, q = solve_meta_game(BIASED_RPS, "lp", b=-BIASED_RPS)
    np.testing.assert_allclose(q, BIASED_NASH, atol=1e-8)
    p, q = solve_meta_game(BIASED_RPS, "replicator")
    np.testing.assert_allclose(p, BIASED_NASH, atol=0.02)
    with pytest.raises(ValueError, match="'lp'"):
        solve_meta_game(BIASED_RPS, "lp", b=BIASED_RPS)
    p, q = solve_meta_game(BIASED_RPS, "max_entropy")
    np.testing.assert_allclose(p, BIASED_NASH, atol=1e-8)
    np.testing.assert_allclose(q, BIASED_NASH, atol=1e-8)
    with pytest.raises(ValueError, match="'max_entropy' needs a symmetric"):
        solve_meta_game(BIASED_RPS, "max_entropy", b=-BIASED_RPS)
    with pytest.raises(ValueError, match="'lp', 'max_entropy', 'replicator'"):
        solve_meta_game(BIASED_RPS, "fictitious")
