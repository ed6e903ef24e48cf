"""Actor-critic networks and the flat weight buffers they travel as.

A policy's weights cross MPI and land in HDF5 as ONE contiguous float32 vector; `layout` is a short
string that names the architecture so that a buffer is never loaded into a network of another shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

MASKED_LOGIT = -1e8


@dataclass(frozen=True)
class PolicyShape:
    """What a network for one role looks like: input size, action space, hidden layers."""

    obs_size: int
    action_space: gymnasium.spaces.Space
    hidden: tuple[int, ...]
    activation: str

    @property
    def discrete(self) -> bool:
        """True for a Discrete action space, False for Box."""
        return isinstance(self.action_space, gymnasium.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Number of logits (Discrete) or action components (Box)."""
        if self.discrete:
            return int(self.action_space.n)
        return int(np.prod(self.action_space.shape))

    @property
    def layout(self) -> str:
        """A string naming the architecture; equal layouts mean interchangeable flat buffers."""
        kind = "discrete" if self.discrete else "box"
        hidden = ",".join(str(h) for h in self.hidden)
        return f"mlp/obs={self.obs_size}/hidden={hidden}/{self.activation}/{kind}={self.action_dim}"


def _mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(n_in, n_out)
        # Orthogonal init as in the PPO implementation-details literature (CleanRL).
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate MLP actor and critic for one role; masked categorical or diagonal Gaussian policy."""

    def __init__(self, shape: PolicyShape) -> None:
        super().__init__()
        self.shape = shape
        sizes = [shape.obs_size, *shape.hidden]
        self.actor = _mlp([*sizes, shape.action_dim], shape.activation, 0.01)
        self.critic = _mlp([*sizes, 1], shape.activation, 1.0)
        if not shape.discrete:
            self.log_std = nn.Parameter(torch.zeros(shape.action_dim))

    def distribution(self, obs: torch.Tensor, mask: torch.Tensor | None) -> Categorical | Normal:
        """The action distribution for a batch of observations (and boolean masks)."""
        out = self.actor(obs)
        if self.shape.discrete:
            if mask is not None:
                out = torch.where(mask, out, torch.full_like(out, MASKED_LOGIT))
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def log_prob(self, dist: Categorical | Normal, action: torch.Tensor) -> torch.Tensor:
        """Log-probability of actions, summed over Box components."""
        logp = dist.log_prob(action)
        return logp if self.shape.discrete else logp.sum(-1)

    def entropy(self, dist: Categorical | Normal) -> torch.Tensor:
        """Entropy per sample, summed over Box components."""
        ent = dist.entropy()
        return ent if self.shape.discrete else ent.sum(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value per observation."""
        return self.critic(obs).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Flat weight buffers
# ---------------------------------------------------------------------------------------------


def num_weights(module: nn.Module) -> int:
    """Length of the module's flat weight buffer."""
    return sum(p.numel() for p in module.parameters())


def flat_weights(module: nn.Module) -> np.ndarray:
    """All parameters as one contiguous float32 numpy vector (a copy, on the CPU)."""
    vec = torch.nn.utils.parameters_to_vector([p.detach() for p in module.parameters()])
    return vec.to("cpu", torch.float32).numpy().copy()


def load_flat_weights(module: nn.Module, weights: np.ndarray) -> None:
    """Copy a flat float32 vector into the module's parameters, checking its size and dtype."""
    expected = num_weights(module)
    if weights.dtype != np.float32 or weights.ndim != 1 or weights.size != expected:
        raise ValueError(
            f"weight buffer of shape {weights.shape} and dtype {weights.dtype} does not fit this "
            f"network: expected ({expected},) float32"
        )
    device = next(module.parameters()).device
    vec = torch.from_numpy(weights).to(device)
    torch.nn.utils.vector_to_parameters(vec, list(module.parameters()))


class FrozenPolicy:
    """A snapshot used only to act (opponents, partners, evaluation): no critic work, no grads."""

    def __init__(self, shape: PolicyShape, weights: np.ndarray, device: torch.device, greedy: bool = False) -> None:
        self.net = ActorCritic(shape).to(device)
        load_flat_weights(self.net, weights)
        self.net.eval()
        self.device = device
        self.greedy = greedy
        self.shape = shape

    @torch.no_grad()
    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch of flat observations."""
        o = torch.from_numpy(obs).to(self.device)
        m = None if mask is None else torch.from_numpy(mask).to(self.device)
        dist = self.net.distribution(o, m)
        if self.greedy:
            a = dist.probs.argmax(-1) if self.shape.discrete else dist.mean
        else:
            a = dist.sample()
        return a.cpu().numpy()


class RandomPolicy:
    """The uniform-random baseline: a legal action uniformly at random (uniform in a Box)."""

    def __init__(self, action_space: gymnasium.spaces.Space, rng: np.random.Generator) -> None:
        self.space = action_space
        self.rng = rng

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Random actions for a batch."""
        n = obs.shape[0]
        if isinstance(self.space, gymnasium.spaces.Discrete):
            if mask is None:
                return self.rng.integers(0, int(self.space.n), size=n)
            # Uniform among legal actions: argmax of random keys restricted to the mask.
            keys = self.rng.random(mask.shape) * mask
            return keys.argmax(axis=1)
        low, high = self.space.low, self.space.high
        return self.rng.uniform(low, high, size=(n, *self.space.shape)).astype(np.float32)
