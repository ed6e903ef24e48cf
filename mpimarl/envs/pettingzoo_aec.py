"""Adapter from a PettingZoo AEC (turn-based) environment to `MultiAgentEnv`.

One `step` call is one turn of the selected agent, followed by the removal of every agent whose
episode has ended (PettingZoo wants them stepped with ``None`` one by one). Rewards of *all*
agents produced by those internal steps are summed into the one `StepResult`, so in a game like
connect_four the loser's -1, which the env hands out during the winner's turn, reaches the loser.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils.wrappers import BaseWrapper, OrderEnforcingWrapper

from mpimarl.envs.base import StepResult, check_actions_match
from mpimarl.envs.encoding import AgentCodecs, CodecAdapter
from mpimarl.errors import EnvironmentSpecError

# Per-step state the adapter reads after every env.step.
_STATE_ATTRIBUTES = ("agents", "agent_selection", "rewards", "terminations", "truncations", "infos")
# PettingZoo wrappers whose __getattr__ only forwards (or refuses access before reset).
_FORWARDING_GETATTR = (BaseWrapper, OrderEnforcingWrapper)


def _state_holder(env: AECEnv) -> Any:
    """The object to read per-step state (rewards, terminations, ...) from.

    PettingZoo wrappers forward attribute reads through a chain of ``__getattr__`` calls, about a
    microsecond per layer per read, while their built-in wrappers (TerminateIllegal, ...) write
    that state onto the unwrapped env. So when no wrapper in the chain defines or intercepts one
    of these attributes, reading them from ``env.unwrapped`` is equivalent and much cheaper. Any
    unknown layer makes us fall back to reading through `env`.
    """
    layer: Any = env
    base = env.unwrapped
    while layer is not base:
        if not isinstance(layer, BaseWrapper):
            return env
        for cls in type(layer).__mro__:
            if cls is BaseWrapper or cls is AECEnv:
                break
            own = vars(cls)
            if any(name in own for name in _STATE_ATTRIBUTES):
                return env
            if ("__getattr__" in own or "__getattribute__" in own) and cls not in _FORWARDING_GETATTR:
                return env
        if any(name in vars(layer) for name in _STATE_ATTRIBUTES):
            return env
        layer = layer.env
    return base


class PettingZooAECAdapter(CodecAdapter):
    """`MultiAgentEnv` over a PettingZoo `AECEnv` (wrapped or not)."""

    def __init__(self, env: AECEnv) -> None:
        """Wrap `env`; spaces are inspected once here, never per step."""
        self._env = env
        self.possible_agents: list[str] = list(env.possible_agents)
        self._codecs = AgentCodecs(self.possible_agents, env.observation_space, env.action_space)
        self._encode = self._codecs.encode
        self._prepare = self._codecs.prepare
        self._state: Any = env
        # Bounded loop guard: each None step must remove one agent.
        self._max_dead_steps = 2 * len(self.possible_agents) + 2




    def reset(self, seed: int | None = None) -> None:
        """Start a new episode and skip past agents that are already done."""
        self._env.reset(seed=seed)
        # Re-checked every reset: a wrapper may only create its own state attributes in reset().
        self._state = _state_holder(self._env)
        self._remove_ended_agents(StepResult({}, {}, {}, False))

    def acting_agents(self) -> list[str]:
        """The selected agent, or nobody once the episode is over."""
        state = self._state
        return [state.agent_selection] if state.agents else []

    def observe(self, agent: str) -> tuple[np.ndarray, np.ndarray | None]:
        """`agent`'s flat observation and action mask."""
        obs, mask = self._encode[agent](self._env.observe(agent))
        if mask is None:
            mask = self._codecs.mask_from_info(agent, self._state.infos.get(agent))
        return obs, mask

    def step(self, actions: dict[str, Any]) -> StepResult:
        """Play the selected agent's action, then remove every agent whose episode ended."""
        state = self._state
        agent = state.agent_selection
        if len(actions) != 1 or agent not in actions:
            check_actions_match(actions, self.acting_agents())
        self._env.step(self._prepare[agent](actions[agent]))
        rewards: dict[str, float] = {}
        for name, reward in state.rewards.items():
            if reward:
                rewards[name] = float(reward)
        result = StepResult(rewards, {}, {}, False)
        selected = state.agent_selection
        if state.agents and not (state.terminations.get(selected) or state.truncations.get(selected)):
            return result  # the common case: the next agent is alive, nothing else to do
        self._remove_ended_agents(result)
        return result

    def _remove_ended_agents(self, result: StepResult) -> None:
        """Step every ended agent with None, recording it in `result`, until a live one acts."""
        env, state = self._env, self._state
        rewards, ended = result.rewards, result.ended
        for _ in range(self._max_dead_steps):
            if not state.agents:
                result.episode_over = True
                return
            agent = state.agent_selection
            terminated = bool(state.terminations.get(agent))
            truncated = bool(state.truncations.get(agent))
            if not (terminated or truncated):
                return
            # Terminated wins when both are set: there is no future value to bootstrap.
            ended[agent] = truncated and not terminated
            if ended[agent]:
                # Must be read before the None step, which deletes the agent.
                result.final_obs[agent] = self._encode[agent](env.observe(agent))[0]
            env.step(None)
            for name, reward in state.rewards.items():
                if reward:
                    rewards[name] = rewards.get(name, 0.0) + float(reward)
        raise EnvironmentSpecError(
            f"the AEC env keeps selecting ended agents (still {list(state.agents)} after "
            f"{self._max_dead_steps} steps with None); its step(None) must remove the selected "
            "agent from env.agents (see PettingZoo's _was_dead_step)"
        )

