"""What a policy network looks like, and the uniform-random policy: the parts of a policy that need
no torch.

Every rank builds its run's :class:`PolicyShape` objects while it checks the config, before it
imports torch, so a bad config ends a job in about a second instead of after every rank has loaded
torch (seconds of CPU per rank; on a cluster, thousands of ranks reading it from a shared file
system). The networks themselves are in mpimarl/algos/networks.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium
import numpy as np

TORSOS = ("mlp", "conv")


@dataclass(frozen=True)
class PolicyShape:
    """What a network for one role looks like: input size, action space, torso, hidden layers."""

    obs_size: int
    action_space: gymnasium.spaces.Space
    hidden: tuple[int, ...]
    activation: str
    obs_shape: tuple[int, ...] = ()
    """The observation's shape before flattening ((height, width, channels) for a board); only the
    conv torso reads it."""
    torso: str = "mlp"
    """"mlp": hidden layers on the flat observation. "conv": 3x3 convolutions (padding 1, ReLU, no
    pooling) over the channels-last board, then the hidden layers."""
    conv_channels: tuple[int, ...] = (32, 64)
    """Output channels of each convolution (conv torso only)."""
    critic_input: int = 0
    """Length of the critic's input when it is centralised (the global state, the agent-specific
    state, plus the other agents' actions for COMA); 0: the critic reads the agent's observation."""
    critic_outputs: int = 1
    """1: a state value V. COMA: one Q value per action of the agent (the action count)."""
    obs_norm: bool = False
    """Normalise the observation (and a centralised critic's input) by running mean and variance
    (:class:`RunningNorm`), whose statistics are part of the weights."""

    def __post_init__(self) -> None:
        """Reject a torso the observation cannot feed (ValueError naming the shape)."""
        if self.torso not in TORSOS:
            raise ValueError(f"torso must be one of {TORSOS}, got {self.torso!r}")
        if self.torso != "conv":
            return
        if len(self.obs_shape) != 3 or math.prod(self.obs_shape) != self.obs_size:
            raise ValueError(
                f"torso 'conv' needs a 3-D (height, width, channels) observation of {self.obs_size} "
                f"values, but the observation's shape is {self.obs_shape or 'unknown'}; use torso 'mlp'"
            )
        if not self.conv_channels or any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be one or more positive ints, got {self.conv_channels}")

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
        head = f"hidden={hidden}/{self.activation}/{kind}={self.action_dim}"
        if self.torso == "conv":
            board = "x".join(str(d) for d in self.obs_shape)
            channels = ",".join(str(c) for c in self.conv_channels)
            return f"conv/obs={board}/ch={channels}/{head}{self._critic_layout}"
        # Unchanged since the first run files: MLP buffers stored then must keep loading.
        return f"mlp/obs={self.obs_size}/{head}{self._critic_layout}"

    @property
    def num_weights(self) -> int:
        """Length of the flat weight buffer of :class:`mpimarl.algos.networks.ActorCritic` for this shape,
        counted without building it (no torch: rank 0's pool cache is checked at start-up with it;
        tests/algos/test_networks.py holds it equal to the network's count for every kind of shape)."""

        def mlp(sizes: list[int]) -> int:
            return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))

        hidden = list(self.hidden)
        if self.torso == "conv":
            height, width, depth = self.obs_shape
            trunk = 0
            for n_out in self.conv_channels:
                trunk += depth * 9 * n_out + n_out  # 3x3 kernels and a bias
                depth = n_out
            actor_input = depth * height * width
        else:
            trunk, actor_input = 0, self.obs_size
        total = trunk + mlp([actor_input, *hidden, self.action_dim])
        critic_input = self.critic_input if self.central else actor_input
        total += mlp([critic_input, *hidden, self.critic_outputs if self.central else 1])
        if not self.discrete:
            total += self.action_dim  # log standard deviations
        if self.obs_norm:  # running mean, variance and count
            total += 2 * self.obs_size + 1 + (2 * self.critic_input + 1 if self.central else 0)
        return total

    @property
    def central(self) -> bool:
        """True when the critic reads a centralised input (state) instead of the observation."""
        return self.critic_input > 0

    @property
    def _critic_layout(self) -> str:
        # Only a centralised critic or input normalisation changes the buffer, so the layouts of
        # networks without them keep their old names.
        critic = f"/critic={self.critic_input}x{self.critic_outputs}" if self.central else ""
        return critic + ("/obsnorm" if self.obs_norm else "")


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
