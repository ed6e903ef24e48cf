"""The seam between acting and learning: where the learner's transitions go.

The rollout runner (:mod:`mpimarl.rollout.runner`) does not know which algorithm learns from what it
plays. It asks a :class:`LearningPolicy` for actions, log-probabilities and values, and writes each
transition into that policy's :class:`TrajectorySink`, keyed by a *stream* (one per environment copy
and agent). Implementations:

- :class:`mpimarl.algos.ppo.StreamRollout`: the local PPO buffer (one trainer rank, or each rank of
  a data-parallel learner group);
- an IMPALA actor's buffer (the same StreamRollout, :mod:`mpimarl.roles.actor`), shipped to a remote
  learner as flat trajectory segments (:mod:`mpimarl.rollout.segment`) and corrected there with
  V-trace (:mod:`mpimarl.algos.impala`);
- :class:`CountingSink`: keeps nothing but counts (evaluation, benchmarks of acting speed).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

import numpy as np


class TrajectorySink(Protocol):
    """Receives the learner's transitions, chained per stream."""

    def add(self, streams: Sequence[Hashable], obs: np.ndarray, mask: np.ndarray | None,
            action: np.ndarray, logp: np.ndarray, value: np.ndarray,
            critic_in: np.ndarray | None = None) -> int:
        """Open one transition per stream (the stream's previous transition completes with `value`);
        `critic_in` is a centralised critic's input (MAPPO, COMA). Returns the first new row's index."""
        ...

    def add_reward(self, stream: Hashable, reward: float) -> None:
        """Credit a reward to the stream's open transition."""
        ...

    def end(self, stream: Hashable, bootstrap: float | None) -> None:
        """Close the stream's episode: terminated (None) or truncated (the value of the final observation)."""
        ...

    def is_open(self, stream: Hashable) -> bool:
        """Whether the stream has an open transition (its agent acted and the episode has not ended)."""
        ...


class LearningPolicy(Protocol):
    """The acting side of whatever learns: actions with their log-probabilities and values."""

    @property
    def sink(self) -> TrajectorySink:
        """Where this policy's transitions go."""
        ...

    def act(self, obs: np.ndarray, mask: np.ndarray | None,
            critic_in: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(actions, log-probabilities, values) for a batch of observations (the critic reads
        `critic_in` where it is centralised)."""
        ...

    def bootstrap(self, streams: Sequence[Hashable], obs: np.ndarray,
                  critic_in: np.ndarray | None) -> np.ndarray:
        """Values of the final observations of cut episodes (truncation, abandoned matches)."""
        ...


class CountingSink:
    """A sink that stores nothing: counts transitions, rewards and episode ends."""

    def __init__(self) -> None:
        self.transitions = 0
        self.reward = 0.0
        self.episodes_ended = 0
        self._open: set[Hashable] = set()

    def add(self, streams: Sequence[Hashable], obs: np.ndarray, mask: np.ndarray | None,
            action: np.ndarray, logp: np.ndarray, value: np.ndarray,
            critic_in: np.ndarray | None = None) -> int:
        """Count one transition per stream; returns the count before them."""
        first = self.transitions
        self.transitions += len(streams)
        self._open.update(streams)
        return first

    def add_reward(self, stream: Hashable, reward: float) -> None:
        """Sum rewards of open transitions."""
        if stream in self._open:
            self.reward += reward

    def end(self, stream: Hashable, bootstrap: float | None) -> None:
        """Count an episode end of an open stream."""
        if stream in self._open:
            self._open.discard(stream)
            self.episodes_ended += 1

    def is_open(self, stream: Hashable) -> bool:
        """Whether the stream acted since its last end."""
        return stream in self._open
