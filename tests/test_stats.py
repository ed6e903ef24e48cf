"""The statistics behind study comparisons: intervals and tests of a difference between setups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpimarl.stats import difference, mean_interval, permutation_p


def test_an_exact_permutation_test_gives_the_smallest_p_for_fully_separated_samples() -> None:
    # 3 vs 3 fully separated: 2 of the C(6, 3) = 20 relabellings are as extreme (both directions)
    p, exact = permutation_p(np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0]), np.random.default_rng(0))
    assert exact and p == pytest.approx(0.1)
    p, _ = permutation_p(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.random.default_rng(0))
    assert p == pytest.approx(1.0)


def test_a_difference_has_a_bootstrap_interval_and_is_resolved_only_when_it_excludes_zero() -> None:
    d = difference([0.9, 0.8, 0.85, 0.95, 0.9], [0.1, 0.2, 0.15, 0.05, 0.1])
    assert d.diff == pytest.approx(0.76) and 0.6 < d.low < d.diff < d.high < 0.9
    assert d.p_value == pytest.approx(2 / 252) and d.exact and d.resolved
    noisy = difference([0.1, 0.9, 0.5], [0.2, 0.8, 0.4])
    assert noisy.low < 0 < noisy.high and not noisy.resolved and noisy.p_value > 0.5
    one = difference([0.9], [0.1, 0.2])
    assert one.n_a == 1 and not one.resolved  # one seed never resolves a difference
    assert math.isnan(difference([], [1.0]).diff)


def test_large_samples_are_tested_by_sampling_relabellings() -> None:
    rng = np.random.default_rng(1)
    d = difference(rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30))
    assert not d.exact and d.p_value < 0.01 and d.resolved


def test_mean_interval_is_student_t() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0, float("nan")])
    assert mean == pytest.approx(2.0) and high - mean == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    assert mean_interval([2.0]) == (2.0, 2.0, 2.0)
