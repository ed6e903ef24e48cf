"""Equilibria of meta-games: the games whose strategies are pool snapshots and whose payoffs are
read from the payoff table.

- `zero_sum_nash`: an exact Nash equilibrium and value of a two-player zero-sum matrix game (LP).
- `max_entropy_nash`: the unique maximum-entropy Nash equilibrium of a symmetric zero-sum game.
- `nash_average`: Nash-averaged ratings (Balduzzi et al. 2018, "Re-evaluating evaluation"),
  which adding copies of a strategy cannot skew.
- `replicator_dynamics`: time-averaged two-population replicator dynamics for bimatrix games.
- `solve_meta_game`: the matchmaker's entry point, by solver name.
"""

from __future__ import annotations

import math

import numpy as np

# scipy.optimize is imported where an LP or SLSQP is solved, not here: every rank imports the league
# package (its pool), but only rank 0 solves meta-games, and scipy.optimize costs each rank about half a
# second of start-up (a tenth of torch's) on the 2-core machine.

SOLVERS = ("lp", "max_entropy", "replicator")
"""Solver names `solve_meta_game` accepts."""

ANTISYMMETRY_TOLERANCE = 1e-9
"""Largest |a + a.T|, relative to max(1, max |a|), that still counts as antisymmetric."""


# ---- validation -------------------------------------------------------------------------------


def _payoff_matrix(name: str, a: object) -> np.ndarray:
    """`a` as a finite, non-empty, 2-D float64 array; ValueError naming `name` otherwise."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D payoff matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it has NaN or infinite entries")
    return arr


def _square(name: str, a: np.ndarray) -> None:
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be square, got shape {a.shape}")


def _distribution(x: np.ndarray) -> np.ndarray:
    """Clip the tiny negatives a solver leaves and renormalise to the simplex."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    total = x.sum()
    return x / total if total > 0 else np.full(x.shape, 1.0 / x.size)


# ---- two-player zero-sum: linear programming --------------------------------------------------


def _maximin(a: np.ndarray) -> tuple[np.ndarray, float]:
    """The row player's maximin strategy and value: maximise v s.t. (a^T p)_j >= v, p in the simplex."""
    from scipy.optimize import linprog

    m, n = a.shape
    cost = np.zeros(m + 1)
    cost[-1] = -1.0  # maximise v
    a_ub = np.hstack([-a.T, np.ones((n, 1))])  # v - (a^T p)_j <= 0
    a_eq = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    bounds = [(0.0, None)] * m + [(None, None)]
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"meta-game LP failed: {res.message}")
    return _distribution(res.x[:m]), float(res.x[-1])


def zero_sum_nash(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A Nash equilibrium (p, q) and the value of the zero-sum game with row payoffs `a`.

    The row player maximises p^T a q and the column player minimises it; each strategy is the
    solution of its player's LP (scipy HiGHS), so both are exact up to solver tolerance.
    """
    a = _payoff_matrix("zero-sum payoff matrix", a)
    p, value = _maximin(a)
    q, neg_value = _maximin(-a.T)
    return p, q, 0.5 * (value - neg_value)


# ---- symmetric zero-sum: the maximum-entropy equilibrium --------------------------------------


def _maximal_support(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every strategy some equilibrium plays, and a non-negative equilibrium direction using all of them.

    For antisymmetric `a` (value 0) the equilibria are the normalised x >= 0 with a^T x >= 0, a
    cone; one LP maximising sum(t), t_i <= x_i, t_i <= 1, finds a point of it with x_i >= 1 on
    every strategy that any equilibrium plays (a sum of scaled equilibria) and x_i = 0 elsewhere.
    """
    from scipy.optimize import linprog

    n = a.shape[0]
    cost = np.concatenate([np.zeros(n), -np.ones(n)])
    a_ub = np.vstack([np.hstack([-a.T, np.zeros((n, n))]),  # a^T x >= 0
                      np.hstack([-np.eye(n), np.eye(n)])])  # t <= x
    bounds = [(0.0, None)] * n + [(0.0, 1.0)] * n
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * n), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"maximal-support LP failed: {res.message}")
    support = res.x[n:] > 0.5
    x = np.where(support, res.x[:n], 0.0)
    return support, x


def _null_space(e: np.ndarray, tolerance: float = 1e-10) -> np.ndarray:
    """Orthonormal basis (columns) of the null space of `e`."""
    _, s, vt = np.linalg.svd(e)
    rank = int(np.sum(s > tolerance * max(1.0, s[0] if s.size else 0.0)))
    return vt[rank:].T


def _neg_entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-300, None)
    return float(np.sum(p * np.log(p)))


def max_entropy_nash(a: np.ndarray) -> np.ndarray:
    """The maximum-entropy Nash equilibrium of the symmetric zero-sum game with antisymmetric `a`.

    The equilibria of such a game (value 0) are {p in the simplex : a^T p >= 0}, a polytope on
    which entropy has a unique maximiser (Balduzzi et al. 2018). It plays every strategy that
    any equilibrium plays, and on that support S it satisfies (a^T p)_j = 0 for j in S. So: find
    S and a feasible interior point by LP, restrict to the affine set {sum p = 1, (a^T p)_S = 0},
    and maximise entropy there with SLSQP under the remaining inequalities (p >= 0,
    (a^T p)_j >= 0 for j outside S). Copies of a strategy therefore split its weight equally.
    """
    a = _payoff_matrix("symmetric zero-sum payoff matrix", a)
    _square("symmetric zero-sum payoff matrix", a)
    scale = max(1.0, float(np.max(np.abs(a))))
    asym = float(np.max(np.abs(a + a.T)))
    if asym > ANTISYMMETRY_TOLERANCE * scale:
        raise ValueError(f"max_entropy_nash needs an antisymmetric matrix (a == -a.T); max |a + a.T| is {asym:.3g}")
    n = a.shape[0]
    support, x = _maximal_support(a)
    idx = np.flatnonzero(support)
    p0 = x[idx] / x[idx].sum()
    a_s = a[np.ix_(idx, idx)]  # payoffs among the support
    a_out = a[np.ix_(idx, np.flatnonzero(~support))]  # support against the strategies outside it
    basis = _null_space(np.vstack([a_s.T, np.ones((1, idx.size))]))
    p = p0
    if basis.shape[1] > 0:
        from scipy.optimize import minimize

        def objective(z: np.ndarray) -> float:
            return _neg_entropy(p0 + basis @ z)

        def gradient(z: np.ndarray) -> np.ndarray:
            return basis.T @ (np.log(np.clip(p0 + basis @ z, 1e-300, None)) + 1.0)

        g = np.vstack([basis, a_out.T @ basis])  # p >= 0 and (a^T p)_j >= 0 outside S, as g z + h >= 0
        h = np.concatenate([p0, a_out.T @ p0])
        constraint = {"type": "ineq", "fun": lambda z: g @ z + h, "jac": lambda z: g}
        res = minimize(objective, np.zeros(basis.shape[1]), jac=gradient, constraints=[constraint],
                       method="SLSQP", options={"maxiter": 500, "ftol": 1e-14})
        candidate = p0 + basis @ res.x
        # Keep the LP point if SLSQP wandered off the equilibrium set or did not improve.
        if np.all(np.isfinite(candidate)) and np.min(g @ res.x + h) > -1e-7 and (
                _neg_entropy(candidate) <= _neg_entropy(p0)):
            p = candidate
    out = np.zeros(n)
    out[idx] = p
    return _distribution(out)


def nash_average(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nash-averaged ratings of the strategies of a score matrix; returns (rating, p).

    `m[i, j]` is i's score (win probability) against j, in [0, 1]. The antisymmetric part
    A = (m - m.T) / 2 (A[i, j] = m[i, j] - 0.5 when m[i, j] + m[j, i] = 1) is solved for its
    max-entropy Nash p, and rating = A @ p: each strategy's expected margin against the Nash
    mixture (0 for strategies in its support, negative for the rest). Adding a copy of a strategy
    changes no other strategy's rating, and the copies split its weight.
    """
    m = _payoff_matrix("score matrix", m)
    _square("score matrix", m)
    if np.any(m < 0.0) or np.any(m > 1.0):
        raise ValueError(f"score matrix entries must be in [0, 1], got range [{m.min():.3g}, {m.max():.3g}]")
    a = 0.5 * (m - m.T)
    p = max_entropy_nash(a)
    return a @ p, p


# ---- bimatrix games: replicator dynamics ------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def replicator_dynamics(a: np.ndarray, b: np.ndarray | None = None, iterations: int = 5000, step: float = 0.05,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Time-averaged two-population replicator dynamics of the bimatrix game (a for rows, b for columns).

    `b` None is the zero-sum game b = -a. Both populations start uniform and take simultaneous
    exponential-weights steps (the discrete-time replicator dynamics: x_i grows as
    exp(step * (a y)_i)). The last iterate cycles around a zero-sum game's equilibrium; the
    average over iterations converges to it, and that average is returned. Deterministic.
    """
    a = _payoff_matrix("row payoff matrix a", a)
    b = -a if b is None else _payoff_matrix("column payoff matrix b", b)
    if b.shape != a.shape:
        raise ValueError(f"payoff matrices must have the same shape, got a {a.shape} and b {b.shape}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive finite number, got {step!r}")
    m, n = a.shape
    log_x, log_y = np.zeros(m), np.zeros(n)
    x_sum, y_sum = np.zeros(m), np.zeros(n)
    for _ in range(iterations):
        x, y = _softmax(log_x), _softmax(log_y)
        x_sum += x
        y_sum += y
        log_x += step * (a @ y)
        log_y += step * (b.T @ x)
    return x_sum / iterations, y_sum / iterations


# ---- entry point ------------------------------------------------------------------------------


def solve_meta_game(a: np.ndarray, solver: str = "lp", b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Equilibrium strategies (rows, columns) of a meta-game by `solver`: 'lp', 'max_entropy' or 'replicator'.

    'lp' is exact but zero-sum only (`b` must be None or -a); 'max_entropy' is the unique
    maximum-entropy equilibrium of a symmetric zero-sum game (antisymmetric `a`); 'replicator' takes
    any bimatrix game.
    """
    if solver == "lp":
        if b is not None:
            a_arr = _payoff_matrix("row payoff matrix a", a)
            b_arr = _payoff_matrix("column payoff matrix b", b)
            if b_arr.shape != a_arr.shape or not np.allclose(b_arr, -a_arr):
                raise ValueError("meta-game solver 'lp' needs a zero-sum game (b None or b == -a); "
                                 "use solver 'replicator' for general-sum games")
        p, q, _ = zero_sum_nash(a)
        return p, q
    if solver == "max_entropy":
        if b is not None:
            raise ValueError("meta-game solver 'max_entropy' needs a symmetric zero-sum game (b None)")
        p = max_entropy_nash(a)
        return p, p
    if solver == "replicator":
        return replicator_dynamics(a, b)
    raise ValueError(f"unknown meta-game solver {solver!r}; expected one of {', '.join(repr(s) for s in SOLVERS)}")
