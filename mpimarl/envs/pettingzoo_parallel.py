"""Adapter from a PettingZoo parallel (simultaneous-move) environment to `MultiAgentEnv`.

Every live agent acts in every `step`. Observations and infos returned by ``reset``/``step`` are
cached so that `observe` costs one dictionary lookup plus the encoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo import ParallelEnv

from mpimarl.envs.base import StepResult, check_actions_match
from mpimarl.envs.encoding import AgentCodecs, CodecAdapter


class PettingZooParallelAdapter(CodecAdapter):
    """`MultiAgentEnv` over a PettingZoo `ParallelEnv` (wrapped or not)."""

    def __init__(self, env: ParallelEnv) -> None:
        """Wrap `env`; spaces are inspected once here, never per step."""
        self._env = env
        self.possible_agents: list[str] = list(env.possible_agents)
        self._codecs = AgentCodecs(self.possible_agents, env.observation_space, env.action_space)
        self._encode = self._codecs.encode
        self._prepare = self._codecs.prepare
        self._obs: dict[str, Any] = {}
        self._infos: dict[str, Any] = {}
        self._acting: list[str] = []
        self._ended: set[str] = set()




    def reset(self, seed: int | None = None) -> None:
        """Start a new episode."""
        out = self._env.reset(seed=seed)
        # PettingZoo < 1.23 parallel envs return only the observations.
        self._obs, self._infos = out if isinstance(out, tuple) else (out, {})
        self._ended = set()
        self._acting = list(self._env.agents)

    def acting_agents(self) -> list[str]:
        """Every live agent."""
        return list(self._acting)

    def observe(self, agent: str) -> tuple[np.ndarray, np.ndarray | None]:
        """`agent`'s flat observation and action mask from the last reset/step."""
        obs, mask = self._encode[agent](self._obs[agent])
        if mask is None:
            mask = self._codecs.mask_from_info(agent, self._infos.get(agent))
        return obs, mask

    def step(self, actions: dict[str, Any]) -> StepResult:
        """Apply every live agent's action simultaneously."""
        acting = self._acting
        if len(actions) != len(acting):
            check_actions_match(actions, acting)
        prepare = self._prepare
        try:
            prepared = {agent: prepare[agent](actions[agent]) for agent in acting}
        except KeyError:
            check_actions_match(actions, acting)
            raise
        obs, rewards, terminations, truncations, infos = self._env.step(prepared)
        self._obs, self._infos = obs, infos

        ended: dict[str, bool] = {}
        final_obs: dict[str, np.ndarray] = {}
        for agent in acting:
            terminated = bool(terminations.get(agent, False))
            truncated = bool(truncations.get(agent, False))
            if terminated or truncated:
                # Terminated wins when both are set: there is no future value to bootstrap.
                ended[agent] = truncated and not terminated
                if ended[agent] and agent in obs:
                    final_obs[agent] = self._encode[agent](obs[agent])[0]
        if ended:
            self._ended.update(ended)
        # Some parallel envs keep finished agents in env.agents; never ask them to act again.
        self._acting = [agent for agent in self._env.agents if agent not in self._ended]
        return StepResult(
            {agent: float(reward) for agent, reward in rewards.items()},
            ended,
            final_obs,
            not self._acting,
        )

