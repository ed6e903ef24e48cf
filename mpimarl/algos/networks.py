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

    # The distributions are written out by hand rather than through torch.distributions: on the
    # small batches of acting, object construction and argument checks cost more than the maths.

    def _masked_logits(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = self.actor(obs)
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        return logits

    def act(self, obs: torch.Tensor, mask: torch.Tensor | None,
            greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or pick the most likely) actions; return (actions, log-probabilities)."""
        out = self._masked_logits(obs, mask) if self.shape.discrete else self.actor(obs)
        if self.shape.discrete:
            logp_all = out.log_softmax(-1)
            if greedy:
                action = logp_all.argmax(-1)
            else:
                # Gumbel-max: argmax(log p + Gumbel noise) is a sample from the categorical.
                gumbel = -torch.log(-torch.log(torch.rand_like(logp_all).clamp_(1e-20, 1.0)))
                action = (logp_all + gumbel).argmax(-1)
            return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        std = self.log_std.exp()
        action = out if greedy else out + std * torch.randn_like(out)
        return action, self._normal_logp(out, action)

    def _normal_logp(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        var = (2 * self.log_std).exp()
        return (-((action - mean) ** 2) / (2 * var) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def evaluate(self, obs: torch.Tensor, mask: torch.Tensor | None,
                 action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of `action` and the policy entropy, per sample (for the PPO loss)."""
        if self.shape.discrete:
            logp_all = self._masked_logits(obs, mask).log_softmax(-1)
            probs = logp_all.exp()
            entropy = -(probs * logp_all).sum(-1)
            return logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1), entropy
        mean = self.actor(obs)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(mean.shape[0])
        return self._normal_logp(mean, action), entropy

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

    @torch.inference_mode()
    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch of flat observations."""
        o = torch.from_numpy(obs).to(self.device)
        m = None if mask is None else torch.from_numpy(mask).to(self.device)
        action, _ = self.net.act(o, m, self.greedy)
        return action.cpu().numpy()


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
