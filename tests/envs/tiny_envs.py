"""Small real Gymnasium environments, broken in chosen ways, for the loader, spec and checker tests."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class TinyEnv(gymnasium.Env):
    """A counter env: obs is `returned_size` copies of `value`, reward 1 per step, ends at `horizon`.

    Each constructor argument breaks one part of the contract on purpose when set.
    """

    def __init__(
        self,
        declared_size: int = 4,
        returned_size: int = 4,
        value: float = 0.0,
        horizon: int | None = 5,
        info_mask: list[int] | None = None,
        action_space: gymnasium.spaces.Space | None = None,
    ) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (declared_size,), np.float32)
        self.action_space = action_space if action_space is not None else spaces.Discrete(2)
        self._returned_size = returned_size
        self._value = value
        self._horizon = horizon
        self._info_mask = info_mask
        self._t = 0

    def _info(self) -> dict[str, Any]:
        return {} if self._info_mask is None else {"action_mask": np.array(self._info_mask, np.int8)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return np.full(self._returned_size, self._value, np.float32), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        done = self._horizon is not None and self._t >= self._horizon
        return np.full(self._returned_size, self._value, np.float32), 1.0, done, False, self._info()
