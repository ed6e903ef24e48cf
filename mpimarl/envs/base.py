"""The one environment contract every trainer, evaluator and checker in mpimarl talks to.

PettingZoo AEC, PettingZoo parallel and Gymnasium environments all look the same through it:
ask who acts (`acting_agents`), read their flat observations and action masks (`observe`), send one
action per acting agent (`step`), and read back what happened to *every* agent during that call
(`StepResult`). The adapters live next to this file, one per API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np

# The three APIs the loader knows; `EnvFactory.api` and `EnvSpec.api` hold one of them.
API_AEC = "aec"
API_PARALLEL = "parallel"
API_GYMNASIUM = "gymnasium"
APIS = (API_AEC, API_PARALLEL, API_GYMNASIUM)

# The name the Gymnasium adapter gives its single agent.
GYMNASIUM_AGENT = "agent"


@dataclass(slots=True)
class StepResult:
    """What happened to every agent during one `MultiAgentEnv.step` call."""

    rewards: dict[str, float]
    """Reward each agent received during this call, summed over any internal sub-steps (in AEC,
    the turns of other agents and the removal of finished agents). Agents with no reward may be
    absent."""

    ended: dict[str, bool]
    """Agents whose episode ended during this call -> True if truncated (time limit, the value
    should be bootstrapped from `final_obs`), False if terminated."""

    final_obs: dict[str, np.ndarray]
    """For every agent in `ended` with True: its last flat observation."""

    episode_over: bool
    """True when the whole episode is over; the caller must call `reset` before stepping again."""


@runtime_checkable
class MultiAgentEnv(Protocol):
    """A multi-agent environment seen through mpimarl's uniform contract.

    Observations are flat float32 vectors; Discrete actions are indices in ``[0, n)`` (the
    adapter adds the space's ``start``); Box actions are float32 arrays that the adapter clips to
    the space's bounds. Arrays returned by `observe` may share memory with the environment:
    copy them if they must outlive the next `step`.
    """

    possible_agents: list[str]

    def obs_size(self, agent: str) -> int:
        """Length of `agent`'s flat float32 observation."""
        ...

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        """`agent`'s action space (Discrete or Box for the spaces mpimarl can train)."""
        ...

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode."""
        ...

    def acting_agents(self) -> list[str]:
        """Agents that must choose an action now (AEC: one; parallel: all live; gym: ["agent"])."""
        ...

    def observe(self, agent: str) -> tuple[np.ndarray, np.ndarray | None]:
        """`agent`'s flat float32 observation and its bool action mask (None if the env has none)."""
        ...

    def step(self, actions: dict[str, Any]) -> StepResult:
        """Apply one action for each of exactly the acting agents."""
        ...

    def close(self) -> None:
        """Release the environment's resources."""
        ...


def check_actions_match(actions: dict[str, Any], acting: list[str]) -> None:
    """Raise ValueError unless `actions` holds exactly the `acting` agents.

    A mismatch is a bug in the caller (trainer or evaluator), not a problem with user input.
    """
    if len(actions) != len(acting) or any(agent not in actions for agent in acting):
        raise ValueError(
            f"step() needs one action for each acting agent {sorted(acting)}, got actions for {sorted(actions)}"
        )
