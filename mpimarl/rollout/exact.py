"""Exact evaluation of trained networks on small OpenSpiel games: exploitability and expected payoffs.

The maths lives in `mpimarl.league.exploitability` (pyspiel, numpy); this module turns pool snapshots
into the probability functions it queries, once per snapshot, and caches the resulting tabular
policies, so the server's cost per generation is one tree walk per measured policy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mpimarl.algos.networks import ActorCritic, PolicyShape, load_flat_weights
from mpimarl.league.pool import SnapshotKey

if TYPE_CHECKING:
    from mpimarl.league.league import League

OPENSPIEL_PREFIX = "openspiel:"

POPULATION = "population"
"""The `policy_id` of exploitability rows that measure the meta-strategy mixture of a role."""


def game_of(env_id: str) -> str:
    """The OpenSpiel game name of an 'openspiel:NAME' env id."""
    if not env_id.startswith(OPENSPIEL_PREFIX):
        raise ValueError(f"env id {env_id!r} is not an OpenSpiel game ('openspiel:NAME')")
    return env_id[len(OPENSPIEL_PREFIX):]


def probabilities_fn(net: ActorCritic) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(obs batch, legal mask batch) -> action probabilities of a discrete policy network."""

    @torch.inference_mode()
    def probs(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        o = torch.from_numpy(np.ascontiguousarray(obs, np.float32))
        m = torch.from_numpy(np.ascontiguousarray(mask, bool))
        p = net.probabilities(o, m).double().numpy()
        p = np.where(mask, p, 0.0)
        return p / p.sum(axis=1, keepdims=True)

    return probs


class ExploitabilityMeter:
    """Tabular views of pool snapshots on one OpenSpiel game, cached by snapshot key.

    `env_id` is the run's 'openspiel:NAME' id and `env_kwargs` the game's parameters; player p is the
    agent 'player_p' and `player_roles[p]` its role, which decides which snapshot plays it;
    `shape_of(role)` is the network shape of that role's policies.
    """

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any], player_roles: Sequence[str],
                 shape_of: Callable[[str], PolicyShape], cache_size: int = 512) -> None:
        from mpimarl.league import exploitability as ex

        self.ex = ex
        self.shape_of = shape_of
        self.game = game_of(env_id)
        self.params = dict(env_kwargs)
        self.role_of_player = list(player_roles)
        self._tabular: OrderedDict[SnapshotKey, Any] = OrderedDict()
        self.cache_size = cache_size

    def tabular(self, league: League, key: SnapshotKey) -> Any:
        """The snapshot as an OpenSpiel tabular policy for the players of its role (cached)."""
        if key in self._tabular:
            self._tabular.move_to_end(key)
            return self._tabular[key]
        snap = league.pool.get(key)
        # Not from the global generator, which samples rank 0's evaluation actions: what this cache
        # holds (empty after a resume) must not change later evaluation episodes.
        with torch.random.fork_rng(devices=[]):
            net = ActorCritic(self.shape_of(snap.role))
        load_flat_weights(net, league.pool.weights(key))
        net.eval()
        fn = probabilities_fn(net)
        players = [fn if role == snap.role else None for role in self.role_of_player]
        table = self.ex.tabular_policy(self.game, self.params, players)
        self._tabular[key] = table
        while len(self._tabular) > self.cache_size:
            self._tabular.popitem(last=False)
        return table

    def expected_returns(self, league: League, seats: list[SnapshotKey]) -> np.ndarray:
        """Exact expected return of every player when player p plays snapshot seats[p]."""
        return np.asarray(self.ex.expected_returns(self.game, self.params,
                                                   [self.tabular(league, k) for k in seats]), np.float64)

    def measure(self, league: League, generation: int) -> list[dict[str, Any]]:
        """Exploitability of every policy's latest snapshot and of each role's population mixture.

        Roles that do not cover every player are measured together with the other roles' latest or
        population policies: in a two-role game the population row mixes both roles' meta-strategies.
        """
        rows: list[dict[str, Any]] = []
        roles = list(dict.fromkeys(self.role_of_player))
        pool = league.pool
        if any(not pool.policy_ids(r) for r in roles):
            return rows
        for pid in pool.policy_ids():
            latest = pool.latest(pid)
            combined = self._combine({latest.role: self.tabular(league, latest.key)},
                                     {r: self.tabular(league, pool.latest(pool.policy_ids(r)[0]).key) for r in roles})
            rows.append(self._row(generation, pid, latest.key.version, latest.role, combined))
        mixtures = {}
        for role in roles:
            weights = league.matchmaker.meta_strategy(pool, role, league.payoff)
            keys = [k for k, w in weights.items() if w > 0]
            if not keys:
                continue
            tables = [self.tabular(league, k) for k in keys]
            mixtures[role] = self.ex.mixture_policy(self.game, self.params, tables, [weights[k] for k in keys])
        if len(mixtures) == len(roles):
            combined = self._combine(mixtures, mixtures)
            rows.append(self._row(generation, POPULATION, -1, "+".join(roles), combined))
        return rows

    def _combine(self, chosen: dict[str, Any], fallback: dict[str, Any]) -> Any:
        """One policy for all players: player p from `chosen` where its role is there, else `fallback`."""
        if len(set(self.role_of_player)) == 1:
            return next(iter(chosen.values()))
        return self.ex.combine_players(self.game, self.params,
                                       [chosen.get(r, fallback[r]) for r in self.role_of_player])

    def _row(self, generation: int, policy_id: str, version: int, role: str, pol: Any) -> dict[str, Any]:
        nash_conv = float(self.ex.nash_conv(self.game, self.params, pol))
        return {"generation": generation, "policy_id": policy_id, "version": version, "role": role,
                "exploitability": nash_conv / len(self.role_of_player), "nash_conv": nash_conv}
