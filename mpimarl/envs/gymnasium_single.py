"""Adapter from a single-agent Gymnasium environment to `MultiAgentEnv`, with one agent "agent"."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from mpimarl.envs.base import GYMNASIUM_AGENT, StepResult, check_actions_match
from mpimarl.envs.encoding import AgentCodecs, CodecAdapter


class GymnasiumSingleAgentAdapter(CodecAdapter):
    """`MultiAgentEnv` over a `gymnasium.Env` (wrapped or not) whose only agent is "agent"."""

    def __init__(self, env: gymnasium.Env) -> None:
        """Wrap `env`; spaces are inspected once here, never per step."""
        self._env = env
        self.possible_agents: list[str] = [GYMNASIUM_AGENT]
        self._codecs = AgentCodecs(self.possible_agents, lambda _: env.observation_space, lambda _: env.action_space)
        self._encode = self._codecs.encode[GYMNASIUM_AGENT]
        self._prepare = self._codecs.prepare[GYMNASIUM_AGENT]
        self._obs: Any = None
        self._info: Any = None
        self._over = True




    def reset(self, seed: int | None = None) -> None:
        """Start a new episode."""
        self._obs, self._info = self._env.reset(seed=seed)
        self._over = False

    def acting_agents(self) -> list[str]:
        """["agent"] during an episode, [] once it is over."""
        return [] if self._over else [GYMNASIUM_AGENT]

    def observe(self, agent: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The flat observation and the action mask (from info["action_mask"] if any)."""
        obs, mask = self._encode(self._obs)
        if mask is None:
            mask = self._codecs.mask_from_info(agent, self._info)
        return obs, mask

    def step(self, actions: dict[str, Any]) -> StepResult:
        """Apply the agent's action."""
        try:
            action = actions[GYMNASIUM_AGENT]
        except KeyError:
            check_actions_match(actions, [GYMNASIUM_AGENT])
            raise
        if len(actions) != 1:
            check_actions_match(actions, [GYMNASIUM_AGENT])
        obs, reward, terminated, truncated, info = self._env.step(self._prepare(action))
        self._obs, self._info = obs, info
        result = StepResult({GYMNASIUM_AGENT: float(reward)}, {}, {}, False)
        if terminated or truncated:
            # Terminated wins when both are set: there is no future value to bootstrap.
            bootstrap = bool(truncated) and not terminated
            result.ended[GYMNASIUM_AGENT] = bootstrap
            if bootstrap:
                result.final_obs[GYMNASIUM_AGENT] = self._encode(obs)[0]
            result.episode_over = self._over = True
        return result

