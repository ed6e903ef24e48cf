"""The global state a centralised critic reads (MAPPO, COMA), beside each agent's own observation.

Actors act on their own observations; a centralised critic reads the *state* of the whole
environment copy instead:

- the environment's own ``state()`` where it has one (PettingZoo parallel envs and MPE: for MPE it
  is every agent's observation, concatenated);
- otherwise the concatenation of every agent's flat observation, in ``possible_agents`` order
  (turn-based AEC games such as connect four; OpenSpiel and Gymnasium games).

Three critic inputs are built from it (`CRITIC_INPUTS`): ``local`` (the agent's own observation,
as independent PPO), ``state`` (the state alone) and ``agent_state`` (MAPPO's agent-specific global
state: the state, the agent's own observation and a one-hot of the agent's index in
``possible_agents``). The state is read from the environment copy the trainer steps, so a trainer
whose partners are frozen snapshots of other ranks (speaker and listener) still sees the full state
of its own episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.errors import EnvironmentSpecError

CRITIC_INPUTS = ("local", "state", "agent_state")
"""What a critic reads: its agent's observation, the global state, or the agent-specific state."""

SOURCE_ENV = "env"
"""The state comes from the environment's own ``state()``."""
SOURCE_OBSERVATIONS = "observations"
"""The state is every agent's observation, concatenated in ``possible_agents`` order."""


def _env_state_function(env: MultiAgentEnv, probe: bool = True) -> Callable[[], Any] | None:
    """The wrapped environment's ``state`` method, or None when it has none (or refuses).

    `probe` calls it once (the env must have been reset) to see whether it is implemented.
    """
    raw = getattr(env, "raw_env", None)
    fn = getattr(raw, "state", None)
    if not callable(fn) or not probe:
        return fn if callable(fn) else None
    try:
        fn()
    except (NotImplementedError, AttributeError):
        # PettingZoo's base classes raise NotImplementedError for envs without a state.
        return None
    return fn


@dataclass(frozen=True)
class StateSpec:
    """Where an environment's global state comes from and how big each critic input is."""

    source: str
    """`SOURCE_ENV` or `SOURCE_OBSERVATIONS`."""
    size: int
    """Length of the flat float32 state."""
    agents: tuple[str, ...]
    """The env's possible agents (the order of the concatenation and of the agent one-hot)."""
    obs_sizes: dict[str, int]
    """Each agent's flat observation length."""
    state_is_observations: bool = False
    """`SOURCE_ENV` only: ``state()`` equalled the agents' concatenated observations at every probe
    step (MPE's does, recomputing every observation), so `StateReader` concatenates the observations
    the adapter already holds instead: the same values at a fraction of the cost."""

    def input_size(self, critic: str, agent: str) -> int:
        """Length of `agent`'s critic input for critic input `critic` (one of `CRITIC_INPUTS`)."""
        if critic == "local":
            return self.obs_sizes[agent]
        if critic == "state":
            return self.size
        if critic == "agent_state":
            return self.size + self.obs_sizes[agent] + len(self.agents)
        raise ValueError(f"critic input must be one of {CRITIC_INPUTS}, got {critic!r}")


PROBE_STEPS = 32
"""Random steps `probe_state` plays to check that every live agent stays observable."""


def probe_state(env: MultiAgentEnv, env_id: str) -> StateSpec:
    """Find the global state of `env` (already reset) and its size.

    Without ``state()``, it plays up to `PROBE_STEPS` random steps and reads every agent that has
    not ended at each one. Raises EnvironmentSpecError naming the agent when the env has no
    ``state()`` and the agents' observations cannot all be read at once (so they cannot be
    concatenated). The env is left mid-episode: reset it before use.
    """
    agents = tuple(env.possible_agents)
    obs_sizes = {a: int(env.obs_size(a)) for a in agents}
    fn = _env_state_function(env)
    if fn is not None:
        value = np.asarray(fn(), np.float32).ravel()
        if value.size == 0 or not np.all(np.isfinite(value)):
            raise EnvironmentSpecError(
                f"env {env_id!r}: its state() returned {value.size} values (some not finite); a "
                "centralised critic needs a non-empty finite numeric state")
        same = _state_equals_observations(env, fn, agents, np.random.default_rng(0))
        return StateSpec(SOURCE_ENV, int(value.size), agents, obs_sizes, state_is_observations=same)
    rng = np.random.default_rng(0)
    ended: set[str] = set()
    for step in range(PROBE_STEPS + 1):
        for agent in agents:
            if agent not in ended:
                _observe_for_state(env, env_id, agent, obs_sizes[agent], step)
        acting = env.acting_agents()
        if step == PROBE_STEPS or not acting:
            break
        result = env.step({a: _random_action(env, a, rng) for a in acting})
        ended.update(result.ended)
        if result.episode_over:
            break
    return StateSpec(SOURCE_OBSERVATIONS, sum(obs_sizes.values()), agents, obs_sizes)


def _concatenated_observations(env: MultiAgentEnv, agents: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([np.asarray(env.observe(agent)[0], np.float32).ravel() for agent in agents])


def _state_equals_observations(env: MultiAgentEnv, fn: Callable[[], Any], agents: tuple[str, ...],
                               rng: np.random.Generator) -> bool:
    """Whether ``state()`` is exactly every agent's observation, concatenated, at each of up to
    `PROBE_STEPS` random steps (and after the episode's last one)."""
    for step in range(PROBE_STEPS + 1):
        try:
            observed = _concatenated_observations(env, agents)
        except Exception:  # noqa: BLE001 - an agent that cannot be observed: no shortcut
            return False
        if not np.array_equal(observed, np.asarray(fn(), np.float32).ravel()):
            return False
        acting = env.acting_agents()
        if step == PROBE_STEPS or not acting:
            break
        # The state after the episode's last step is compared too (cut episodes bootstrap from it).
        env.step({a: _random_action(env, a, rng) for a in acting})
    return True


def _observe_for_state(env: MultiAgentEnv, env_id: str, agent: str, size: int, step: int) -> None:
    try:
        obs, _ = env.observe(agent)
    except Exception as exc:  # noqa: BLE001 - the env's own failure, reported with the agent
        raise EnvironmentSpecError(
            f"env {env_id!r} has no global state: it has no state() method and agent {agent!r}'s "
            f"observation cannot be read at step {step} of a random episode ({type(exc).__name__}: {exc}), "
            "so the agents' observations cannot be concatenated; use ppo.critic 'local'"
        ) from exc
    if np.asarray(obs).size != size:
        raise EnvironmentSpecError(
            f"env {env_id!r}: agent {agent!r}'s observation has {np.asarray(obs).size} values but its "
            f"space declares {size}, so the observations cannot be concatenated into a state")


def _random_action(env: MultiAgentEnv, agent: str, rng: np.random.Generator) -> Any:
    space = env.action_space(agent)
    if hasattr(space, "n"):
        mask = env.observe(agent)[1]
        legal = np.flatnonzero(mask) if mask is not None and mask.any() else np.arange(int(space.n))
        return int(rng.choice(legal))
    return rng.uniform(space.low, space.high).astype(np.float32)


class StateReader:
    """Reads the global state of ONE environment copy, and builds critic inputs from it.

    Concatenated observations: an agent whose observation cannot be read any more (it left a
    turn-based game) contributes its last observation read, or zeros before the first.
    """

    def __init__(self, env: MultiAgentEnv, spec: StateSpec) -> None:
        self.env = env
        self.spec = spec
        self._fn = _env_state_function(env, probe=False) if spec.source == SOURCE_ENV else None
        self._last = {a: np.zeros(n, np.float32) for a, n in spec.obs_sizes.items()}
        self._index = {a: i for i, a in enumerate(spec.agents)}

    def read(self) -> np.ndarray:
        """The current flat float32 state (a fresh array)."""
        if self._fn is not None:
            if self.spec.state_is_observations:
                try:
                    return _concatenated_observations(self.env, self.spec.agents)
                except Exception:  # noqa: BLE001 - an agent not observable now: ask the env itself
                    pass
            return np.asarray(self._fn(), np.float32).ravel().copy()
        parts = []
        for agent in self.spec.agents:
            try:
                obs = np.asarray(self.env.observe(agent)[0], np.float32)
                self._last[agent] = obs
            except Exception:  # noqa: BLE001 - a finished agent may not be observable: keep its last view
                obs = self._last[agent]
            parts.append(obs)
        return np.concatenate(parts)

    def critic_input(self, critic: str, agent: str, state: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """`agent`'s critic input from the copy's `state` and the agent's own observation `obs`."""
        if critic == "local":
            return obs
        if critic == "state":
            return state
        one_hot = np.zeros(len(self.spec.agents), np.float32)
        one_hot[self._index[agent]] = 1.0
        return np.concatenate([state, obs, one_hot])
