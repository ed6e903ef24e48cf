"""Small real Gymnasium environments, broken in chosen ways, for the loader, spec and checker tests."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv


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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return np.full(self._returned_size, self._value, np.float32), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        done = self._horizon is not None and self._t >= self._horizon
        return np.full(self._returned_size, self._value, np.float32), 1.0, done, False, self._info()


class TakeTurnsAEC(AECEnv):
    """Two agents "a" and "b" alternate for `turns` turns; the one who moves last gets +1.

    With `stray=True` the env selects an agent that is not in possible_agents after one turn.
    """

    metadata = {"name": "take_turns_v0"}

    def __init__(self, turns: int = 4, stray: bool = False) -> None:
        super().__init__()
        self.possible_agents = ["a", "b"]
        self._turns = turns
        self._stray = stray
        self._space = spaces.Box(0.0, 1.0, (1,), np.float32)

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self._space

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return spaces.Discrete(2)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos: dict[str, dict[str, Any]] = {agent: {} for agent in self.agents}
        self.agent_selection = "a"
        self._t = 0

    def observe(self, agent: str) -> np.ndarray:
        return np.array([self._t / self._turns], np.float32)

    def step(self, action: Any) -> None:
        if self.terminations[self.agent_selection] or self.truncations[self.agent_selection]:
            self._was_dead_step(action)
            return
        self._clear_rewards()
        self._t += 1
        mover = self.agent_selection
        if self._t >= self._turns:
            self.rewards[mover] = 1.0
            self.terminations = dict.fromkeys(self.agents, True)
        self.agent_selection = "ghost" if self._stray else ("b" if mover == "a" else "a")
        self._accumulate_rewards()
