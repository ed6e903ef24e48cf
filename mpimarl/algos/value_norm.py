"""Value normalisation: the critic learns returns scaled to zero mean and unit variance.

MAPPO (Yu et al. 2021) found that normalising value targets with running statistics matters on
cooperative tasks whose return scale drifts as the team improves. The critic's raw output is read
as a normalised value; `denormalize` turns it back into returns for advantages and bootstraps.
"""

from __future__ import annotations

import numpy as np


class ValueNormalizer:
    """Running mean and variance of value targets (parallel Welford update, float64)."""

    def __init__(self, epsilon: float = 1e-5) -> None:
        self.mean = 0.0
        self.var = 1.0
        self.count = epsilon
        self.epsilon = epsilon

    @property
    def std(self) -> float:
        """Standard deviation of the targets seen so far (at least sqrt(epsilon))."""
        return float(np.sqrt(max(self.var, self.epsilon)))

    def update(self, values: np.ndarray) -> None:
        """Fold a batch of targets into the running statistics."""
        x = np.asarray(values, np.float64).ravel()
        if x.size == 0:
            return
        self.update_moments(x.size, float(x.mean()), float(x.var()))

    def update_moments(self, n: int, batch_mean: float, batch_var: float) -> None:
        """Fold in a batch given by its size, mean and population variance (e.g. summed over the
        ranks of a learner group)."""
        if n == 0:
            return
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta * delta * self.count * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """(values - mean) / std."""
        return ((np.asarray(values, np.float64) - self.mean) / self.std).astype(np.float32)

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        """values * std + mean."""
        return (np.asarray(values, np.float64) * self.std + self.mean).astype(np.float32)
