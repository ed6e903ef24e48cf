"""Stepping many environment copies together, with batched inference per policy.

Every copy plays one match at a time: a *seating* maps each agent to the key of the policy that
controls it (the learner, a pool snapshot, or the random baseline). At each tick the runner asks
every copy which agents must act, groups them by policy, runs ONE forward pass per policy, and steps
every copy. The learner's transitions go into its trajectory sink (:mod:`mpimarl.rollout.sink`: a
local PPO buffer, a stream to a remote learner, a tally); everything else only acts.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.rollout.critic_inputs import CriticInputs
from mpimarl.rollout.sink import LearningPolicy

LEARNER = "learner"


class ActingPolicy(Protocol):
    """Anything that maps a batch of observations (and masks) to actions."""

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch."""
        ...


@dataclass
class FinishedEpisode:
    """One episode that ended in copy `env_index`, with each agent's return."""

    env_index: int
    seating: dict[str, Hashable]
    tag: Any
    returns: dict[str, float]
    length: int

    def side_returns(self, key: Hashable) -> tuple[float, float]:
        """Mean per-agent return of the agents `key` controls, and of everyone else (NaN if nobody)."""
        own = [r for a, r in self.returns.items() if self.seating[a] == key]
        other = [r for a, r in self.returns.items() if self.seating[a] != key]
        return float(np.mean(own)), float(np.mean(other)) if other else float("nan")


@dataclass
class _Slot:
    seating: dict[str, Hashable]
    tag: Any
    returns: dict[str, float] = field(default_factory=dict)
    length: int = 0
    active: bool = True


class VectorMatches:
    """Steps `len(envs)` copies; the caller seats every copy with `start` before ticking."""

    def __init__(self, envs: list[MultiAgentEnv], seed: int, critic_inputs: CriticInputs | None = None) -> None:
        self.envs = envs
        self.critic_inputs = critic_inputs
        """A centralised critic's inputs (global state) for the learner's transitions; None: local critic."""
        self.slots: list[_Slot | None] = [None] * len(envs)
        self.env_steps = 0
        self._seed = seed
        self._episodes_started = 0
        self._is_discrete: dict[str, bool] = {}
        for agent in envs[0].possible_agents:
            space = envs[0].action_space(agent)
            self._is_discrete[agent] = hasattr(space, "n")

    def start(self, index: int, seating: dict[str, Hashable], tag: Any = None, seed: int | None = None) -> None:
        """Reset copy `index` and seat a new match in it.

        Without `seed`, every episode gets the next seed of this runner's sequence; evaluation passes
        explicit seeds so that two policies can be compared on identical episodes.
        """
        env = self.envs[index]
        env.reset(seed=self._seed + self._episodes_started if seed is None else seed)
        self._episodes_started += 1
        self.slots[index] = _Slot(seating=seating, tag=tag, returns=dict.fromkeys(seating, 0.0))

    def stop(self, index: int) -> None:
        """Leave copy `index` idle until the next `start`."""
        self.slots[index] = None

    @property
    def num_active(self) -> int:
        """Copies currently playing a match."""
        return sum(s is not None for s in self.slots)

    def tick(self, policies: Mapping[Hashable, ActingPolicy],
             learner: LearningPolicy | None = None) -> list[FinishedEpisode]:
        """Act and step every active copy once; returns the episodes that ended in this tick."""
        actions = self._act(policies, learner)
        finished, truncated = self._step_all(actions, learner)
        if learner is not None:
            sink = learner.sink
            if truncated:
                streams = [stream for stream, _, _ in truncated]
                critic_in = None if self.critic_inputs is None else np.stack([c for _, _, c in truncated])
                boot = learner.bootstrap(streams, np.stack([obs for _, obs, _ in truncated]), critic_in)
                for stream, v in zip(streams, boot):
                    sink.end(stream, float(v))
            # An episode can end without the env reporting every learner agent as ended.
            for ep in finished:
                for agent, key in ep.seating.items():
                    if key == LEARNER:
                        sink.end((ep.env_index, agent), None)
        return finished

    def _act(self, policies: Mapping[Hashable, ActingPolicy], learner: LearningPolicy | None) -> list[dict[str, Any]]:
        """Group the acting agents of all copies by policy; one forward pass per policy."""
        envs = self.envs
        groups: dict[Hashable, list[tuple[int, str]]] = {}
        for i, slot in enumerate(self.slots):
            if slot is None:
                continue
            seating = slot.seating
            for agent in envs[i].acting_agents():
                groups.setdefault(seating[agent], []).append((i, agent))
        actions: list[dict[str, Any]] = [{} for _ in envs]
        feed = self.critic_inputs if learner is not None else None
        joint_rows: tuple[int, list[tuple[int, str]]] | None = None
        if feed is not None:
            feed.new_tick()
        for key, requests in groups.items():
            observed = [envs[i].observe(agent) for i, agent in requests]
            obs = np.stack([o for o, _ in observed])
            mask = None if observed[0][1] is None else np.stack([m for _, m in observed])
            if key == LEARNER:
                if learner is None:
                    raise ValueError("a copy seats the learner but no learner was given to tick()")
                critic_in = None if feed is None else feed.build(requests, obs)
                act, logp, value = learner.act(obs, mask, critic_in)
                start = learner.sink.add(requests, obs, mask, act, logp, value, critic_in)
                joint_rows = (start, requests)
            else:
                act = policies[key].act(obs, mask)
            for (i, agent), a in zip(requests, act):
                actions[i][agent] = int(a) if self._is_discrete[agent] else a
        if feed is not None and feed.joint is not None and joint_rows is not None and learner is not None:
            # COMA: the others' actions of this tick are known only now that every policy has acted.
            start, requests = joint_rows
            others = feed.others(requests, actions)
            ro = learner.sink  # COMA learns locally: the sink is its StreamRollout
            assert ro.critic_in is not None
            ro.critic_in[start:start + len(requests), learner.state_input:] = others
        return actions

    def _step_all(self, actions: list[dict[str, Any]], learner: LearningPolicy | None
                  ) -> tuple[list[FinishedEpisode], list[tuple[tuple[int, str], np.ndarray, np.ndarray | None]]]:
        """Step every active copy; credit rewards; collect finished episodes and truncated agents
        (stream, final observation, critic input at the final state or None)."""
        finished: list[FinishedEpisode] = []
        truncated: list[tuple[tuple[int, str], np.ndarray, np.ndarray | None]] = []
        feed = self.critic_inputs
        sink = learner.sink if learner is not None else None
        for i, slot in enumerate(self.slots):
            if slot is None:
                continue
            result = self.envs[i].step(actions[i])
            self.env_steps += 1
            slot.length += 1
            seating = slot.seating
            returns = slot.returns
            for agent, r in result.rewards.items():
                returns[agent] = returns.get(agent, 0.0) + r
                if sink is not None and seating.get(agent) == LEARNER:
                    sink.add_reward((i, agent), r)
            if sink is not None:
                for agent, was_truncated in result.ended.items():
                    if seating.get(agent) != LEARNER:
                        continue
                    if was_truncated and agent in result.final_obs:
                        final = result.final_obs[agent]
                        truncated.append(((i, agent), final, None if feed is None else feed.final(i, agent, final)))
                    else:
                        sink.end((i, agent), None)
            if result.episode_over:
                finished.append(FinishedEpisode(i, seating, slot.tag, dict(returns), slot.length))
                self.slots[i] = None
        return finished, truncated

    def abandon(self, index: int, learner: LearningPolicy | None) -> None:
        """Drop copy `index`'s match mid-episode (its opponents left the cache).

        The learner's open transitions end as if truncated: they bootstrap from the value of each
        agent's current observation, so no experience is thrown away or mislabelled as terminal.
        """
        slot = self.slots[index]
        if slot is None:
            return
        if learner is not None:
            sink = learner.sink
            agents = [a for a, k in slot.seating.items() if k == LEARNER and sink.is_open((index, a))]
            if agents:
                obs = np.stack([self.envs[index].observe(a)[0] for a in agents])
                feed = self.critic_inputs
                critic_in = None if feed is None else np.stack([feed.final(index, a, o) for a, o in zip(agents, obs)])
                values = learner.bootstrap([(index, a) for a in agents], obs, critic_in)
                for agent, v in zip(agents, values):
                    sink.end((index, agent), float(v))
        self.slots[index] = None
