"""Statistics for comparing setups over seeds: intervals of a mean, and of a difference of means.

Studies compare few seeds per setup (3 to 5 on a workstation), so nothing here assumes normal
data beyond the Student-t interval of one mean: a difference between two setups gets a bootstrap
percentile interval and a two-sided permutation test (exact when the relabellings are few enough
to enumerate), both fixed by a seed so a study is reproducible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 20_000
"""Permutation tests enumerate every relabelling up to this many, else sample this many."""


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as float64 (None and NaN dropped)."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the finite `values` (one value: no width; none: NaNs)."""
    from scipy import stats

    x = finite(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its bootstrap interval and a two-sided permutation p-value."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    p_value: float
    exact: bool
    """True when the p-value enumerated every relabelling of the pooled values."""

    @property
    def resolved(self) -> bool:
        """The interval of the difference excludes 0 (and each side has at least two values)."""
        return self.n_a >= 2 and self.n_b >= 2 and (self.low > 0 or self.high < 0)


def permutation_p(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, bool]:
    """Two-sided p-value of |mean(a) - mean(b)| under random relabelling of the pooled values."""
    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    tolerance = 1e-12 * max(1.0, float(np.abs(pooled).max()))
    if math.comb(n, k) <= EXACT_LIMIT:
        sums = np.array([pooled[list(idx)].sum() for idx in itertools.combinations(range(n), k)])
        exact = True
    else:
        sums = np.array([pooled[rng.permutation(n)[:k]].sum() for _ in range(EXACT_LIMIT)])
        exact = False
    diffs = np.abs(sums / k - (total - sums) / (n - k))
    return float(np.mean(diffs >= observed - tolerance)), exact


def difference(a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = 10_000,
               seed: int = 0) -> Difference:
    """Compare two samples (one value per seed): the difference of their means, a bootstrap
    percentile interval of it (each sample resampled on its own), and a permutation p-value.
    NaNs where either side has no value."""
    x, y = finite(a), finite(b)
    if len(x) == 0 or len(y) == 0:
        return Difference(len(x), len(y), math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, False)
    rng = np.random.default_rng(seed)
    diff = float(x.mean() - y.mean())
    boot = rng.choice(x, (resamples, len(x))).mean(axis=1) - rng.choice(y, (resamples, len(y))).mean(axis=1)
    low, high = (float(v) for v in np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2]))
    p, exact = permutation_p(x, y, rng)
    return Difference(len(x), len(y), float(x.mean()), float(y.mean()), diff, low, high, p, exact)
