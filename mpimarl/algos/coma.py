"""COMA's pieces (Foerster et al. 2018): the joint-action input of the centralised Q critic and the
counterfactual advantage. Plain NumPy/PyTorch, no MPI.

For agent a the critic reads its centralised input (the global or agent-specific state) followed by
the other agents' actions u_-a as one-hot vectors, and outputs Q(s, (u_-a, u')) for every action u'
of agent a in one pass. The counterfactual baseline marginalises agent a's own action under its
current policy, keeping the others' actions fixed:

    A_a(s, u) = Q(s, u) - sum_u' pi_a(u' | tau_a) Q(s, (u_-a, u'))

so it credits agent a only for what its own choice changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


class JointActions:
    """One-hot encoding of the other agents' actions, in `possible_agents` order.

    An agent that did not act at this time (turn-based games, finished agents) contributes zeros.
    """

    def __init__(self, agents: Sequence[str], action_counts: Mapping[str, int]) -> None:
        self.agents = tuple(agents)
        self.counts = {a: int(action_counts[a]) for a in self.agents}
        self.offsets: dict[str, int] = {}
        offset = 0
        for a in self.agents:
            self.offsets[a] = offset
            offset += self.counts[a]
        self.total = offset
        # Column indices of everyone-but-`agent` in the full joint one-hot, for batched gathers.
        self.others_columns = {
            a: np.array([c for c in range(self.total) if not self.offsets[a] <= c < self.offsets[a] + self.counts[a]],
                        np.int64) for a in self.agents}

    def full(self, actions: Mapping[str, int]) -> np.ndarray:
        """Every agent's action one-hot, concatenated (zeros for agents absent from `actions`)."""
        out = np.zeros(self.total, np.float32)
        for agent, action in actions.items():
            out[self.offsets[agent] + int(action)] = 1.0
        return out

    def others_size(self, agent: str) -> int:
        """Length of agent `agent`'s others-actions vector."""
        return self.total - self.counts[agent]

    def encode(self, agent: str, actions: Mapping[str, int]) -> np.ndarray:
        """The one-hot actions of every agent but `agent` (float32, `others_size(agent)` long)."""
        return self.full(actions)[self.others_columns[agent]]


def counterfactual_advantage(q: torch.Tensor, probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A = Q(s, u) - sum_u' pi(u') Q(s, (u_-a, u')), per row.

    q: (batch, n) Q of every own action with the others' actions fixed; probs: (batch, n) the
    agent's policy (zero on masked actions); actions: (batch,) the actions taken.
    """
    taken = q.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return taken - (probs * q).sum(-1)


def expected_q(q: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """V(s) = sum_u pi(u) Q(s, u): the counterfactual baseline, used as a bootstrap value."""
    return (probs * q).sum(-1)
