"""What a centralised critic reads for each of the learner's transitions, built while the runner steps.

One `StateReader` per environment copy reads the copy's global state once per tick (the state is the
same for every agent of the copy); each learner agent's critic input is then the state, or MAPPO's
agent-specific state (state, own observation, agent one-hot). For COMA the input ends with the other
agents' actions of the same tick, known only once every policy has acted, so they are filled in after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.envs.state import StateReader, StateSpec


class JointActions:
    """One-hot encoding of the other agents' actions, in `possible_agents` order.

    An agent that did not act at this time (turn-based games, finished agents) contributes zeros.
    """

    def __init__(self, agents: Sequence[str], action_counts: Mapping[str, int]) -> None:
        self.agents = tuple(agents)
        self.counts = {a: int(action_counts[a]) for a in self.agents}
        self.offsets: dict[str, int] = {}
        offset = 0
        for a in self.agents:
            self.offsets[a] = offset
            offset += self.counts[a]
        self.total = offset
        # Column indices of everyone-but-`agent` in the full joint one-hot, for batched gathers.
        self.others_columns = {
            a: np.array([c for c in range(self.total) if not self.offsets[a] <= c < self.offsets[a] + self.counts[a]],
                        np.int64) for a in self.agents}

    def full(self, actions: Mapping[str, int]) -> np.ndarray:
        """Every agent's action one-hot, concatenated (zeros for agents absent from `actions`)."""
        out = np.zeros(self.total, np.float32)
        for agent, action in actions.items():
            out[self.offsets[agent] + int(action)] = 1.0
        return out

    def others_size(self, agent: str) -> int:
        """Length of agent `agent`'s others-actions vector."""
        return self.total - self.counts[agent]

    def encode(self, agent: str, actions: Mapping[str, int]) -> np.ndarray:
        """The one-hot actions of every agent but `agent` (float32, `others_size(agent)` long)."""
        return self.full(actions)[self.others_columns[agent]]


class CriticInputs:
    """Critic inputs of the learner's agents across the runner's environment copies."""

    def __init__(self, envs: Sequence[MultiAgentEnv], spec: StateSpec, critic: str,
                 joint: JointActions | None = None) -> None:
        self.readers = [StateReader(env, spec) for env in envs]
        self.critic = critic
        self.joint = joint
        """COMA's encoder of the others' actions; None for MAPPO."""
        self._states: dict[int, np.ndarray] = {}
        self._index = {a: k for k, a in enumerate(spec.agents)}
        self._eye = np.eye(len(spec.agents), dtype=np.float32)

    def new_tick(self) -> None:
        """Forget the states read during the previous tick (the copies have stepped since)."""
        self._states.clear()

    def state(self, index: int) -> np.ndarray:
        """Copy `index`'s state, read once per tick."""
        state = self._states.get(index)
        if state is None:
            state = self._states[index] = self.readers[index].read()
        return state

    def build(self, requests: Sequence[tuple[int, str]], obs: np.ndarray) -> np.ndarray:
        """Critic inputs (without COMA's others' actions) of the acting learner agents, in request order.

        Built column block by column block for the whole batch: this runs every tick.
        """
        states = np.stack([self.state(i) for i, _ in requests])
        if self.critic == "state":
            return states
        one_hot = self._eye[[self._index[agent] for _, agent in requests]]
        return np.concatenate([states, obs, one_hot], axis=1)

    def final(self, index: int, agent: str, final_obs: np.ndarray) -> np.ndarray:
        """An agent's critic input at the state its episode was cut in (read after the step)."""
        state = self.readers[index].read()
        return self.readers[index].critic_input(self.critic, agent, state, final_obs)

    def others(self, requests: Sequence[tuple[int, str]], actions: Sequence[dict[str, Any]]) -> np.ndarray:
        """COMA: the one-hot actions every other agent took in the same copy at this tick."""
        joint = self.joint
        assert joint is not None
        full = {i: joint.full(actions[i]) for i in {i for i, _ in requests}}  # once per copy, not per agent
        return np.stack([full[i][joint.others_columns[agent]] for i, agent in requests])
