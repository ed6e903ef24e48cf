"""V-trace off-policy targets (Espeholt et al. 2018, IMPALA, section 4.1), as pure NumPy.

For a trajectory segment x_s .. x_{s+n} played by a behaviour policy mu and learned by a target
policy pi, with truncated importance weights rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t)) and
c_t = lambda * min(c_bar, pi(a_t|x_t) / mu(a_t|x_t)) (the paper's remark 5 in section 4.1: lambda in
[0, 1] mixes in TD(lambda)-style bootstrapping, lambda = 1 is plain V-trace):

    v_s = V(x_s) + sum_{t=s}^{s+n-1} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t V,
    delta_t V = rho_t (r_t + gamma V(x_{t+1}) - V(x_t)),

computed backwards as v_s - V(x_s) = delta_s V + gamma c_s (v_{s+1} - V(x_{s+1})). The policy
gradient uses the advantage rho_s (r_s + gamma v_{s+1} - V(x_s)). A terminal step (done) cuts both
the bootstrap and the recursion. With on-policy data (pi = mu, rho_bar, c_bar >= 1) every rho is 1,
every c is lambda, and v_s is the TD(lambda) return, bootstrapped from the value after the segment:
v_s = r_s + gamma ((1 - lambda) V(x_{s+1}) + lambda v_{s+1}); at lambda = 1, the n-step return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VTraceReturns:
    """The value targets v_s and the policy-gradient advantages of one segment (time-major)."""

    vs: np.ndarray
    pg_advantages: np.ndarray
    rhos: np.ndarray  # the truncated importance weights min(rho_bar, pi/mu)


def vtrace(behaviour_logp: np.ndarray, target_logp: np.ndarray, rewards: np.ndarray, values: np.ndarray,
           bootstrap: np.ndarray | float, dones: np.ndarray, gamma: float, rho_bar: float = 1.0,
           c_bar: float = 1.0, lam: float = 1.0) -> VTraceReturns:
    """V-trace targets for time-major arrays of shape (T,) or (T, B).

    `values[t]` is V(x_t); `bootstrap` is V(x_T), the value after the last step (per column);
    `dones[t]` marks that the episode ended with step t (no bootstrap through it); `lam` scales the
    trace coefficients (c_t = lam * min(c_bar, pi/mu)).
    """
    if rho_bar <= 0 or c_bar <= 0:
        raise ValueError(f"V-trace truncation levels must be positive, got rho_bar={rho_bar}, c_bar={c_bar}")
    if c_bar > rho_bar:
        raise ValueError(f"V-trace needs c_bar <= rho_bar (the paper's assumption), "
                         f"got c_bar={c_bar} > rho_bar={rho_bar}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"V-trace lambda must be in [0, 1], got lam={lam}")
    ratio = np.exp(np.asarray(target_logp, np.float64) - np.asarray(behaviour_logp, np.float64))
    rhos = np.minimum(rho_bar, ratio)
    cs = lam * np.minimum(c_bar, ratio)
    values = np.asarray(values, np.float64)
    rewards = np.asarray(rewards, np.float64)
    discounts = gamma * (1.0 - np.asarray(dones, np.float64))
    next_values = np.concatenate([values[1:], np.asarray(bootstrap, np.float64)[None, ...]
                                  if np.ndim(bootstrap) else np.full((1, *values.shape[1:]), bootstrap)])
    deltas = rhos * (rewards + discounts * next_values - values)
    acc = np.zeros(values.shape[1:])
    vs_minus_v = np.zeros_like(values)
    for t in range(len(values) - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = values + vs_minus_v
    next_vs = np.concatenate([vs[1:], next_values[-1:]])
    pg_advantages = rhos * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs.astype(np.float32), pg_advantages.astype(np.float32), rhos.astype(np.float32))
