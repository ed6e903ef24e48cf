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

import torch

# The joint-action encoding needs no torch: it lives with the other critic inputs (a rank builds it
# while it checks the config, before torch is imported) and stays importable from here.
from mpimarl.rollout.critic_inputs import JointActions

__all__ = ["JointActions", "counterfactual_advantage"]


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
