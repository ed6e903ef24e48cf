"""Per-agent observation encoders and action preparers shared by the adapters.

Both are chosen once per agent when an adapter is built, so the per-step work is a single plain
function call with no space inspection: this code runs on every environment step and the
trainer's throughput must stay close to the raw environment's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from mpimarl.errors import EnvironmentSpecError

Encoded = tuple[np.ndarray, "np.ndarray | None"]
"""A flat float32 observation and a bool action mask (or None)."""

MASK_KEY = "action_mask"
OBSERVATION_KEY = "observation"


@dataclass(frozen=True)
class ObservationEncoder:
    """Turns one agent's raw observation into a flat float32 vector (and an action mask)."""

    size: int
    """Length of the flat observation."""
    mask_in_obs: bool
    """True when the observation itself carries the action mask (a Dict with "action_mask")."""
    encode: Callable[[Any], Encoded]
    """raw observation -> (flat float32 observation, bool mask or None)."""
    shape: tuple[int, ...]
    """The observation's shape before flattening, e.g. (6, 7, 2) for a board; (size,) when the
    observation is not an array (a one-hot Discrete, a flattened Tuple)."""


def _encode_box(raw: Any) -> Encoded:
    # asarray is a no-op for float32 input and ravel a view for contiguous input: no copy on the
    # common path, which is why this avoids gymnasium.spaces.flatten.
    return np.asarray(raw, np.float32).ravel(), None


def make_observation_encoder(space: gymnasium.spaces.Space) -> ObservationEncoder:
    """Build the encoder for observations drawn from `space`.

    Box -> raveled float32; Dict with "observation" and "action_mask" -> the encoded
    "observation" plus the mask as bool (other keys are ignored); Discrete -> one-hot; anything
    else -> `gymnasium.spaces.flatten`. Raises ValueError for spaces that cannot be flattened.
    """
    if isinstance(space, spaces.Box):
        size = int(np.prod(space.shape, dtype=np.int64))
        return ObservationEncoder(size, False, _encode_box, tuple(int(d) for d in space.shape) or (size,))

    if isinstance(space, spaces.Dict) and OBSERVATION_KEY in space.spaces and MASK_KEY in space.spaces:
        inner = make_observation_encoder(space.spaces[OBSERVATION_KEY])
        encode_inner = inner.encode

        def encode_masked(raw: Any) -> Encoded:
            return encode_inner(raw[OBSERVATION_KEY])[0], np.asarray(raw[MASK_KEY], dtype=bool).ravel()

        return ObservationEncoder(inner.size, True, encode_masked, inner.shape)

    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)

        def encode_one_hot(raw: Any) -> Encoded:
            vector = np.zeros(n, np.float32)
            vector[int(raw) - start] = 1.0
            return vector, None

        return ObservationEncoder(n, False, encode_one_hot, (n,))

    try:
        size = int(spaces.flatdim(space))
    except (ValueError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"observation space {space} cannot be flattened to a vector: {exc}") from exc

    def encode_flattened(raw: Any) -> Encoded:
        return np.asarray(spaces.flatten(space, raw), np.float32), None

    return ObservationEncoder(size, False, encode_flattened, (size,))


def make_action_preparer(space: gymnasium.spaces.Space) -> Callable[[Any], Any]:
    """Build the function that turns a policy's action into what the environment accepts.

    Discrete: an index in ``[0, n)`` -> Python int shifted by the space's ``start``. Box: a flat
    float array -> reshaped to the space's shape, cast to its dtype and clipped to its bounds
    (policies sample from unbounded Gaussians). Other spaces pass through unchanged; the spec
    builder rejects them before training starts.
    """
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        if start == 0:
            return int
        return lambda action: int(action) + start

    if isinstance(space, spaces.Box):
        low, high, shape, dtype = space.low, space.high, space.shape, space.dtype

        def prepare_box(action: Any) -> np.ndarray:
            return np.clip(np.asarray(action, dtype).reshape(shape), low, high)

        return prepare_box

    return lambda action: action


def action_size(space: gymnasium.spaces.Space) -> int:
    """Number of choices (Discrete) or of action dimensions (Box); 0 for other spaces."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape, dtype=np.int64))
    return 0


def info_mask(info: Any) -> np.ndarray | None:
    """The bool action mask an environment put in an agent's info dict, or None."""
    if info and MASK_KEY in info:
        return np.asarray(info[MASK_KEY], dtype=bool).ravel()
    return None


class AgentCodecs:
    """Every agent's observation encoder and action preparer, built once per adapter.

    It also remembers which agents have ever received an action mask through their info dict, so
    that `observe` keeps returning a mask (all legal) for them on steps where the env omits it.
    """

    def __init__(
        self,
        agents: list[str],
        observation_space: Callable[[str], gymnasium.spaces.Space],
        action_space: Callable[[str], gymnasium.spaces.Space],
    ) -> None:
        """Inspect each agent's spaces once; raise EnvironmentSpecError for an unflattenable one."""
        self.encoders: dict[str, ObservationEncoder] = {}
        self.encode: dict[str, Callable[[Any], Encoded]] = {}
        self.prepare: dict[str, Callable[[Any], Any]] = {}
        self.action_spaces: dict[str, gymnasium.spaces.Space] = {}
        self.info_masked: set[str] = set()
        for agent in agents:
            try:
                encoder = make_observation_encoder(observation_space(agent))
            except ValueError as exc:
                raise EnvironmentSpecError(
                    f"agent {agent!r}: {exc}; mpimarl needs Box, Discrete, Dict(observation, "
                    "action_mask) or another flattenable observation space"
                ) from exc
            self.encoders[agent] = encoder
            self.encode[agent] = encoder.encode
            space = action_space(agent)
            self.action_spaces[agent] = space
            self.prepare[agent] = make_action_preparer(space)

    def mask_from_info(self, agent: str, info: Any) -> np.ndarray | None:
        """`agent`'s mask from its info dict; all-legal if it had one before but not now."""
        mask = info_mask(info)
        if mask is not None:
            self.info_masked.add(agent)
            return mask
        if agent in self.info_masked:
            return np.ones(action_size(self.action_spaces[agent]), dtype=bool)
        return None


class CodecAdapter:
    """What every adapter shares: the wrapped env, its per-agent codecs, spaces and closing."""

    _env: Any
    _codecs: AgentCodecs

    @property
    def raw_env(self) -> Any:
        """The wrapped environment."""
        return self._env

    def obs_size(self, agent: str) -> int:
        """Length of `agent`'s flat observation."""
        return self._codecs.encoders[agent].size

    def obs_shape(self, agent: str) -> tuple[int, ...]:
        """Shape of `agent`'s observation before flattening (see `ObservationEncoder.shape`)."""
        return self._codecs.encoders[agent].shape

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        """`agent`'s action space."""
        return self._codecs.action_spaces[agent]

    def close(self) -> None:
        """Close the wrapped environment."""
        self._env.close()
