"""Repeated Bertrand price competition with differentiated products and logit demand.

The economic environment of Calvano, Calzolari, Denicolò and Pastorello (2020), "Artificial
Intelligence, Algorithmic Pricing, and Collusion", American Economic Review 110(10): n firms sell
differentiated products; each period every firm picks a price from a discrete grid, the logit demand

    q_i = exp((a_i - p_i) / mu) / (sum_j exp((a_j - p_j) / mu) + exp(a_0 / mu))

decides how much each sells, and firm i earns (p_i - c_i) q_i. The state is the prices of the last
period (memory one), so strategies can reward and punish: the mechanism behind the supra-competitive
prices that Calvano et al. found Q-learners settle on.

The baseline parameters are theirs: two firms, a_i = 2, a_0 = 0, c_i = 1, mu = 1/4, a grid of 15
prices spanning [p_N - xi (p_M - p_N), p_M + xi (p_M - p_N)] with xi = 0.1, where p_N is the one-shot
Bertrand-Nash price (about 1.473) and p_M the price that maximises the firms' joint profit (about
1.925). They used discount 0.95 over an infinite horizon; an episode here ends (truncation) after
`horizon` periods, long against the 1/(1 - 0.95) = 20 periods that discounting makes count.

It is an ordinary PettingZoo ``ParallelEnv``: nothing in this file knows about mpimarl. A config
names it as ``env.id: examples.bertrand.pricing:parallel_env`` (run from the repository root, or
put the folder on PYTHONPATH), and ``nash_price`` / ``monopoly_price`` below are scripted baselines
(``policy: examples.bertrand.pricing:nash_price``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from scipy.optimize import brentq, minimize_scalar


@dataclass(frozen=True)
class Market:
    """The demand and cost side: logit demand with symmetric firms."""

    firms: int = 2
    quality: float = 2.0
    """a_i: every product's quality index."""
    outside: float = 0.0
    """a_0: the outside good's quality index."""
    cost: float = 1.0
    """c_i: every firm's marginal cost."""
    mu: float = 0.25
    """Horizontal differentiation: 0 makes products perfect substitutes."""

    def demand(self, prices: np.ndarray) -> np.ndarray:
        """Each firm's quantity at these prices (the last axis indexes firms)."""
        utility = np.exp((self.quality - np.asarray(prices, float)) / self.mu)
        return utility / (utility.sum(axis=-1, keepdims=True) + np.exp(self.outside / self.mu))

    def profits(self, prices: np.ndarray) -> np.ndarray:
        """Each firm's profit per period, (p_i - c) q_i."""
        prices = np.asarray(prices, float)
        return (prices - self.cost) * self.demand(prices)

    def symmetric(self, price: float) -> np.ndarray:
        """All firms charging `price`."""
        return np.full(self.firms, price)

    @functools.cached_property
    def nash_price(self) -> float:
        """The one-shot Bertrand-Nash price p_N: each firm's best response to the others charging it.

        With logit demand the first-order condition is p - c = mu / (1 - q_i(p)); solved at a
        symmetric profile."""
        def gap(p: float) -> float:
            q = self.demand(self.symmetric(p))[0]
            return p - self.cost - self.mu / (1 - q)

        return float(brentq(gap, self.cost + 1e-9, self.cost + 10 * self.mu + 10))

    @functools.cached_property
    def monopoly_price(self) -> float:
        """The symmetric price p_M that maximises the firms' joint profit (a cartel's price)."""
        res = minimize_scalar(lambda p: -self.profits(self.symmetric(p)).sum(),
                              bounds=(self.cost, self.cost + 10 * self.mu + 10), method="bounded",
                              options={"xatol": 1e-10})
        return float(res.x)

    def prices(self, points: int = 15, xi: float = 0.1) -> np.ndarray:
        """Calvano et al.'s grid: `points` equally spaced prices from p_N - xi (p_M - p_N) to p_M + xi (p_M - p_N)."""
        span = self.monopoly_price - self.nash_price
        return np.linspace(self.nash_price - xi * span, self.monopoly_price + xi * span, points)

    def collusion_index(self, profit: float) -> float:
        """Calvano et al.'s Delta: (profit - pi_N) / (pi_M - pi_N): 0 at the Nash profit, 1 at the monopoly profit."""
        nash = self.profits(self.symmetric(self.nash_price))[0]
        monopoly = self.profits(self.symmetric(self.monopoly_price))[0]
        return float((profit - nash) / (monopoly - nash))


class BertrandEnv(ParallelEnv):
    """Repeated pricing game: agents ``firm_0 .. firm_{n-1}``, Discrete(points) prices.

    Observation of firm i: the last period's price index of every firm, one-hot, firm i's own
    first and then the others in order (so one policy can sit in any seat): a float32 vector of
    ``firms * points`` values. The first period's "last prices" are drawn at random (seeded by
    ``reset(seed=...)``). Reward: the period's profit. ``infos[agent]`` holds the prices charged
    (``price``), the quantity sold and the profit, for analysis.
    """

    metadata = {"name": "bertrand_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, firms: int = 2, points: int = 15, xi: float = 0.1, horizon: int = 100,
                 mu: float = 0.25, quality: float = 2.0, outside: float = 0.0, cost: float = 1.0,
                 render_mode: str | None = None) -> None:
        if firms < 2:
            raise ValueError(f"firms must be at least 2, got {firms}")
        if points < 2 or horizon < 1:
            raise ValueError(f"points must be >= 2 and horizon >= 1, got points={points}, horizon={horizon}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.market = Market(firms, quality, outside, cost, mu)
        self.grid = self.market.prices(points, xi)
        self.horizon = horizon
        self.render_mode = render_mode
        self.possible_agents = [f"firm_{i}" for i in range(firms)]
        self.agents: list[str] = []
        self._obs_space = gymnasium.spaces.Box(0.0, 1.0, (firms * points,), np.float32)
        self._act_space = gymnasium.spaces.Discrete(points)
        self._rng = np.random.default_rng()
        self._last = np.zeros(firms, np.int64)
        self._t = 0

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        """One-hot last prices, own first."""
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        """An index into the price grid."""
        return self._act_space

    def _observe(self, i: int) -> np.ndarray:
        points = len(self.grid)
        order = [i, *(j for j in range(len(self.possible_agents)) if j != i)]
        obs = np.zeros(len(order) * points, np.float32)
        for slot, j in enumerate(order):
            obs[slot * points + self._last[j]] = 1.0
        return obs

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode from random last prices."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        self._last = self._rng.integers(0, len(self.grid), len(self.agents))
        return {a: self._observe(i) for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        """Every firm posts a price; each sells by logit demand and earns its profit."""
        index = np.array([int(actions[a]) for a in self.possible_agents])
        prices = self.grid[index]
        quantities = self.market.demand(prices)
        profits = (prices - self.market.cost) * quantities
        self._last = index
        self._t += 1
        done = self._t >= self.horizon
        agents = list(self.possible_agents)
        obs = {a: self._observe(i) for i, a in enumerate(agents)}
        rewards = {a: float(profits[i]) for i, a in enumerate(agents)}
        infos = {a: {"price": float(prices[i]), "quantity": float(quantities[i]), "profit": float(profits[i])}
                 for i, a in enumerate(agents)}
        if done:
            self.agents = []
        return (obs, rewards, {a: False for a in agents}, {a: done for a in agents}, infos)

    def render(self) -> str | None:
        """The last prices, as text."""
        if self.render_mode != "ansi":
            return None
        return "  ".join(f"{a}: {self.grid[self._last[i]]:.3f}" for i, a in enumerate(self.possible_agents))

    def close(self) -> None:
        """Nothing to release."""


def parallel_env(**kwargs: object) -> BertrandEnv:
    """The factory a config names: ``env.id: examples.bertrand.pricing:parallel_env``."""
    return BertrandEnv(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Scripted baselines: fixed pricing rules, as evaluation anchors (config `baselines`)
# ---------------------------------------------------------------------------------------------

DEFAULT = BertrandEnv()


def _nearest(price: float) -> int:
    return int(np.abs(DEFAULT.grid - price).argmin())


def nash_price(obs: np.ndarray, mask: np.ndarray | None) -> int:
    """Always the grid price nearest the one-shot Nash price (the competitive benchmark)."""
    return _nearest(DEFAULT.market.nash_price)


def monopoly_price(obs: np.ndarray, mask: np.ndarray | None) -> int:
    """Always the grid price nearest the joint-profit (monopoly) price."""
    return _nearest(DEFAULT.market.monopoly_price)
