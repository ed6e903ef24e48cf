"""Actor-critic networks and the flat weight buffers they travel as.

A policy's weights cross MPI and land in HDF5 as ONE contiguous float32 vector; `layout` is a short
string that names the architecture so that a buffer is never loaded into a network of another shape.

Two torsos read the observation: "mlp" (the flat vector straight into the hidden layers) and
"conv" (for boards: the (height, width, channels) observation through 3x3 convolutions first).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# PolicyShape and RandomPolicy need no torch and live in mpimarl/algos/shapes.py (so that a rank can
# check a config before it imports torch); they stay importable from here.
from mpimarl.algos.shapes import TORSOS, PolicyShape, RandomPolicy

MASKED_LOGIT = -1e8
__all__ = ["MASKED_LOGIT", "TORSOS", "ActorCritic", "FrozenPolicy", "PolicyShape", "RandomPolicy", "RunningNorm",
           "flat_weights", "load_flat_weights", "num_weights"]


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


class RunningNorm(nn.Module):
    """Inputs shifted and scaled by running per-feature mean and variance, then clipped to +-`clip`
    (the observation normalisation of PPO on MuJoCo: CleanRL's ``NormalizeObservation``, clip 10).

    Raw MuJoCo observations mix angles (~0.1) with joint velocities (~10); without this the first
    layer sees the velocities only. The statistics are parameters without gradient, so they sit in
    the policy's flat weight buffer: a snapshot in the pool, an opponent's copy, a resumed run and
    an exported ONNX file all normalise exactly as the learner did when it acted. The learner folds
    in each rollout's inputs *after* its update (:meth:`update_moments`), so the policy that
    collected a rollout is the one whose log-probabilities the update's ratio starts from.
    """

    def __init__(self, size: int, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(size), requires_grad=False)
        self.var = nn.Parameter(torch.ones(size), requires_grad=False)
        self.count = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.clip = clip
        self.epsilon = epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + epsilon), clipped to +-clip."""
        return ((x - self.mean) / torch.sqrt(self.var + self.epsilon)).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update_moments(self, n: int, batch_mean: np.ndarray, batch_var: np.ndarray) -> None:
        """Fold in a batch given by its size and per-feature mean and population variance
        (parallel Welford in float64, as :class:`mpimarl.algos.value_norm.ValueNormalizer`)."""
        if n <= 0:
            return
        count = float(self.count.item())
        mean = self.mean.detach().cpu().double().numpy()
        var = self.var.detach().cpu().double().numpy()
        delta = np.asarray(batch_mean, np.float64) - mean
        total = count + n
        new_mean = mean + delta * n / total
        new_var = (var * count + np.asarray(batch_var, np.float64) * n + delta * delta * count * n / total) / total
        self.mean.copy_(torch.from_numpy(new_mean))
        self.var.copy_(torch.from_numpy(new_var))
        self.count.fill_(total)


class _BoardToChannels(nn.Module):
    """Flat row-major (H*W*C) observations -> (N, C, H, W), the layout convolutions expect."""

    def __init__(self, board: tuple[int, int, int]) -> None:
        super().__init__()
        self.board = board

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        """Unflatten and move the channels first (a view for contiguous input, no copy)."""
        return flat.reshape(-1, *self.board).permute(0, 3, 1, 2)


def _conv_torso(board: tuple[int, int, int], channels: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """3x3 convolutions with padding 1 and ReLU, then flatten; returns the torso and its output size.

    No pooling and no stride: a 6x7 board has no spatial redundancy to throw away.
    """
    height, width, depth = board
    layers: list[nn.Module] = [_BoardToChannels(board)]
    for n_out in channels:
        conv = nn.Conv2d(depth, n_out, kernel_size=3, padding=1)
        nn.init.orthogonal_(conv.weight, math.sqrt(2))
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
        depth = n_out
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), depth * height * width


class ActorCritic(nn.Module):
    """Actor and critic for one role; masked categorical or diagonal Gaussian policy.

    MLP torso: separate actor and critic MLPs. Conv torso: one convolutional trunk feeds both the
    actor's and the critic's hidden layers. The convolutions are most of the cost, and
    `act_with_value` / `evaluate_with_value` run them once for both heads (about 30% less time than
    two trunks); sharing features between policy and value is the usual choice for board games
    (AlphaZero) and pixels (the PPO Atari setup).
    """

    def __init__(self, shape: PolicyShape) -> None:
        super().__init__()
        self.shape = shape
        if shape.central:
            # A centralised critic reads the state, not the observation: its own MLP, no shared trunk.
            if shape.torso == "conv":
                board = (shape.obs_shape[0], shape.obs_shape[1], shape.obs_shape[2])
                trunk, features = _conv_torso(board, shape.conv_channels)
                actor_head = _mlp([features, *shape.hidden, shape.action_dim], shape.activation, 0.01)
                self.actor = nn.Sequential(trunk, actor_head)
            else:
                trunk = nn.Identity()
                actor_head = self.actor = _mlp([shape.obs_size, *shape.hidden, shape.action_dim],
                                               shape.activation, 0.01)
            critic_head = self.critic = _mlp([shape.critic_input, *shape.hidden, shape.critic_outputs],
                                             shape.activation, 1.0)
        elif shape.torso == "conv":
            board = (shape.obs_shape[0], shape.obs_shape[1], shape.obs_shape[2])
            trunk, features = _conv_torso(board, shape.conv_channels)
            actor_head = _mlp([features, *shape.hidden, shape.action_dim], shape.activation, 0.01)
            critic_head = _mlp([features, *shape.hidden, 1], shape.activation, 1.0)
            # The trunk sits in both: parameters() yields it once, so the flat buffer holds it once.
            self.actor = nn.Sequential(trunk, actor_head)
            self.critic = nn.Sequential(trunk, critic_head)
        else:
            # Registered exactly as before the conv torso existed: stored MLP buffers keep loading.
            trunk = nn.Identity()
            actor_head = self.actor = _mlp([shape.obs_size, *shape.hidden, shape.action_dim], shape.activation, 0.01)
            critic_head = self.critic = _mlp([shape.obs_size, *shape.hidden, 1], shape.activation, 1.0)
        if not shape.discrete:
            self.log_std = nn.Parameter(torch.zeros(shape.action_dim))
        # Registered last, so the buffers of networks without them keep their old order.
        self.obs_norm: RunningNorm | None = None
        self.critic_norm: RunningNorm | None = None
        if shape.obs_norm:
            self.obs_norm = RunningNorm(shape.obs_size)
            trunk = self.obs_norm if isinstance(trunk, nn.Identity) else nn.Sequential(self.obs_norm, trunk)
            if shape.central:
                self.critic_norm = RunningNorm(shape.critic_input)
        # A plain tuple, so that these references are not registered a second time.
        self._parts: tuple[nn.Module, nn.Module, nn.Module] = (trunk, actor_head, critic_head)

    # The distributions are written out by hand rather than through torch.distributions: on the
    # small batches of acting, object construction and argument checks cost more than the maths.

    def _policy_out(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Masked logits (Discrete) or Gaussian means (Box) from the trunk's features."""
        out = self._parts[1](features)
        if mask is not None and self.shape.discrete:
            out = out.masked_fill(~mask, MASKED_LOGIT)
        return out

    def _sample(self, out: torch.Tensor, greedy: bool) -> tuple[torch.Tensor, torch.Tensor]:
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

    def _score(self, out: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shape.discrete:
            logp_all = out.log_softmax(-1)
            probs = logp_all.exp()
            entropy = -(probs * logp_all).sum(-1)
            return logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1), entropy
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(out.shape[0])
        return self._normal_logp(out, action), entropy

    def _normal_logp(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        var = (2 * self.log_std).exp()
        return (-((action - mean) ** 2) / (2 * var) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def act(self, obs: torch.Tensor, mask: torch.Tensor | None,
            greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or pick the most likely) actions; return (actions, log-probabilities)."""
        return self._sample(self._policy_out(self._parts[0](obs), mask), greedy)

    def act_with_value(self, obs: torch.Tensor, mask: torch.Tensor | None,
                       greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`act` and `value` in one pass through the trunk: (actions, log-probabilities, values)."""
        features = self._parts[0](obs)
        action, logp = self._sample(self._policy_out(features, mask), greedy)
        return action, logp, self._parts[2](features).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, mask: torch.Tensor | None,
                 action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of `action` and the policy entropy, per sample (for the PPO loss)."""
        return self._score(self._policy_out(self._parts[0](obs), mask), action)

    def evaluate_with_value(self, obs: torch.Tensor, mask: torch.Tensor | None,
                            action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`evaluate` and `value` in one pass through the trunk: (log-probabilities, entropies, values)."""
        features = self._parts[0](obs)
        logp, entropy = self._score(self._policy_out(features, mask), action)
        return logp, entropy, self._parts[2](features).squeeze(-1)

    def probabilities(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Action probabilities of a discrete policy (zero on masked actions), for exact evaluation."""
        if not self.shape.discrete:
            raise ValueError("action probabilities exist only for Discrete action spaces")
        return self._policy_out(self._parts[0](obs), mask).softmax(-1)

    def _critic_input(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's input normalised like the rest of the network (observation or central input)."""
        norm = self.critic_norm if self.shape.central else self.obs_norm
        return x if norm is None else norm(x)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value per observation (per critic input when the critic is centralised)."""
        return self.critic(self._critic_input(obs)).squeeze(-1)

    def action_values(self, critic_in: torch.Tensor) -> torch.Tensor:
        """COMA: Q of every action of the agent, (batch, actions), from its centralised critic input."""
        return self.critic(self._critic_input(critic_in))


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
    """A snapshot used only to act (opponents, partners, evaluation): no critic work, no grads.

    Trainers keep them on the CPU (acting batches are tiny; mpimarl/devices.py). `weights` keeps the
    flat buffer it was built from, so forwarding it to other ranks needs no re-flattening."""

    def __init__(self, shape: PolicyShape, weights: np.ndarray, device: torch.device, greedy: bool = False) -> None:
        # The throwaway initialisation must not draw from the global generator, which samples actions:
        # otherwise how many snapshots a rank happens to have cached would change its later actions
        # (and a resumed run, whose caches start empty, would not repeat an uninterrupted one).
        with torch.random.fork_rng(devices=[]):
            net = ActorCritic(shape)
        self.net = net.to(device)
        load_flat_weights(self.net, weights)
        self.net.eval()
        self.weights = weights
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
