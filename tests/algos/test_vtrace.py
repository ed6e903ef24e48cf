"""V-trace against the published formulas, written out as plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from mpimarl.algos.vtrace import vtrace


def _paper_vs(mu_logp, pi_logp, r, v, boot, done, gamma, rho_bar, c_bar, lam=1.0):  # noqa: ANN001, ANN202
    """v_s = V(x_s) + sum_t gamma^(t-s) (prod_{i<t} c_i) rho_t (r_t + gamma V(x_{t+1}) - V(x_t)),
    c_i = lambda min(c_bar, rho_i), summed straight from the definition (no recursion), cut at episode ends."""
    n = len(r)
    ratio = np.exp(pi_logp - mu_logp)
    rho = np.minimum(rho_bar, ratio)
    c = lam * np.minimum(c_bar, ratio)
    v_next = np.append(v[1:], boot)
    vs = np.zeros(n)
    for s in range(n):
        total = v[s]
        for t in range(s, n):
            weight = gamma ** (t - s) * np.prod(c[s:t])
            not_done = 0.0 if done[t] else 1.0
            total += weight * rho[t] * (r[t] + gamma * not_done * v_next[t] - v[t])
            if done[t]:
                break
        vs[s] = total
    adv = np.zeros(n)
    for s in range(n):
        following = (vs[s + 1] if s + 1 < n else boot)
        not_done = 0.0 if done[s] else 1.0
        adv[s] = rho[s] * (r[s] + gamma * not_done * following - v[s])
    return vs, adv


@pytest.mark.parametrize(("rho_bar", "c_bar", "lam"), [(1.0, 1.0, 1.0), (2.0, 0.5, 1.0), (0.7, 0.7, 1.0),
                                                       (1.0, 1.0, 0.8), (2.0, 0.5, 0.5), (1.0, 1.0, 0.0)])
def test_vtrace_matches_the_paper_definition(rho_bar: float, c_bar: float, lam: float) -> None:
    """Off-policy data with episode ends: the recursion equals the direct sum of the definition."""
    rng = np.random.default_rng(0)
    n = 12
    mu = np.log(rng.uniform(0.1, 1.0, n))
    pi = np.log(rng.uniform(0.1, 1.0, n))
    r = rng.normal(size=n)
    v = rng.normal(size=n)
    done = np.zeros(n, bool)
    done[4] = True
    boot = 0.37
    out = vtrace(mu, pi, r, v, boot, done, 0.9, rho_bar, c_bar, lam)
    vs, adv = _paper_vs(mu, pi, r, v, boot, done, 0.9, rho_bar, c_bar, lam)
    np.testing.assert_allclose(out.vs, vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.pg_advantages, adv, rtol=1e-5, atol=1e-5)
    assert (out.rhos <= rho_bar + 1e-6).all()


def test_on_policy_vtrace_is_the_n_step_return() -> None:
    """pi = mu: every rho and c is 1, and v_s is the discounted return to the segment's end plus the
    discounted bootstrap (lambda = 1), per column of a (T, B) batch."""
    rng = np.random.default_rng(1)
    t_len, b = 8, 3
    logp = np.log(rng.uniform(0.1, 1.0, (t_len, b)))
    r = rng.normal(size=(t_len, b))
    v = rng.normal(size=(t_len, b))
    boot = rng.normal(size=b)
    done = np.zeros((t_len, b), bool)
    done[2, 1] = True  # column 1's episode ends after step 2: its earlier returns stop there
    gamma = 0.95
    out = vtrace(logp, logp, r, v, boot, done, gamma, rho_bar=1.0, c_bar=1.0)
    for col in range(b):
        for s in range(t_len):
            ret, discount = 0.0, 1.0
            for t in range(s, t_len):
                ret += discount * r[t, col]
                if done[t, col]:
                    discount = 0.0
                    break
                discount *= gamma
            ret += discount * boot[col]
            assert out.vs[s, col] == pytest.approx(ret, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(out.rhos, 1.0)


def _n_step_return(r, v, boot, done, gamma, s, n):  # noqa: ANN001, ANN202
    """G_s^(n): n discounted rewards from s, then gamma^n V(x_{s+n}); the plain return if the episode ends first."""
    v_next = np.append(v, boot)
    ret = 0.0
    for k in range(n):
        ret += gamma**k * r[s + k]
        if done[s + k]:
            return ret
    return ret + gamma**n * v_next[s + n]


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
def test_on_policy_vtrace_with_lambda_is_the_td_lambda_return(lam: float) -> None:
    """pi = mu, lambda < 1: v_s is the lambda-return, the (1 - lambda) lambda^(n-1)-weighted mix of the
    n-step returns G_s^(n) (the last one, to the segment's end, takes the remaining weight lambda^(N-1))."""
    rng = np.random.default_rng(2)
    n = 10
    logp = np.log(rng.uniform(0.1, 1.0, n))
    r = rng.normal(size=n)
    v = rng.normal(size=n)
    boot = 0.5
    done = np.zeros(n, bool)
    done[3] = True
    gamma = 0.9
    out = vtrace(logp, logp, r, v, boot, done, gamma, rho_bar=1.0, c_bar=1.0, lam=lam)
    for s in range(n):
        horizon = n - s
        expected = sum((1 - lam) * lam ** (k - 1) * _n_step_return(r, v, boot, done, gamma, s, k)
                       for k in range(1, horizon))
        expected += lam ** (horizon - 1) * _n_step_return(r, v, boot, done, gamma, s, horizon)
        assert out.vs[s] == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_truncation_levels_are_checked() -> None:
    """c_bar above rho_bar, or a non-positive level, is refused with the values named."""
    z = np.zeros(2)
    with pytest.raises(ValueError, match="c_bar=2"):
        vtrace(z, z, z, z, 0.0, z, 0.9, rho_bar=1.0, c_bar=2.0)
    with pytest.raises(ValueError, match="positive"):
        vtrace(z, z, z, z, 0.0, z, 0.9, rho_bar=0.0, c_bar=0.0)
    with pytest.raises(ValueError, match="lam=1.5"):
        vtrace(z, z, z, z, 0.0, z, 0.9, lam=1.5)
