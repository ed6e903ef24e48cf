"""A contract check users run on their own environment (`python -m mpimarl check CONFIG`).

In the spirit of PettingZoo's ``api_test``: a few episodes with uniformly random legal actions
through the same adapter the trainers use, failing with a message that says what broke, for
which agent, and at which episode and step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from mpimarl.envs.base import StepResult
from mpimarl.envs.loader import EnvFactory
from mpimarl.envs.spec import EnvSpec
from mpimarl.errors import EnvironmentSpecError

MAX_EPISODE_STEPS = 100_000


class _Checker:
    """State of one check run, so that every failure can say where it happened."""

    def __init__(self, spec: EnvSpec, seed: int, max_episode_steps: int) -> None:
        self.spec = spec
        self.max_episode_steps = max_episode_steps
        self.rng = np.random.default_rng(seed)
        self.episode = 0
        self.step = 0

    def fail(self, problem: str) -> EnvironmentSpecError:
        """The error to raise for `problem`, located at the current episode and step."""
        return EnvironmentSpecError(
            f"env {self.spec.env_id!r} failed the check at episode {self.episode}, step {self.step}: {problem}"
        )

    def check_obs(self, agent: str, obs: Any, what: str) -> None:
        size = self.spec.roles[self.spec.role_of[agent]].obs_size
        if not isinstance(obs, np.ndarray) or obs.dtype != np.float32 or obs.shape != (size,):
            shape = getattr(obs, "shape", None)
            dtype = getattr(obs, "dtype", type(obs).__name__)
            raise self.fail(
                f"agent {agent!r}: {what} has shape {shape} and dtype {dtype}, expected a flat "
                f"float32 vector of length obs_size={size} (the size of its observation space)"
            )
        if not np.isfinite(obs).all():
            bad = np.flatnonzero(~np.isfinite(obs))[:5].tolist()
            raise self.fail(f"agent {agent!r}: {what} has non-finite values at indices {bad}")

    def check_mask(self, agent: str, mask: np.ndarray | None) -> None:
        role = self.spec.roles[self.spec.role_of[agent]]
        if mask is None:
            if role.has_mask:
                raise self.fail(
                    f"agent {agent!r} of role {role.name!r} returned no action mask, but the "
                    "role's agents had one after reset"
                )
            return
        n = role.action_space.n if isinstance(role.action_space, spaces.Discrete) else None
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise self.fail(
                f"agent {agent!r}: action mask has shape {mask.shape} and dtype {mask.dtype}, "
                f"expected bool of shape ({n},) matching action space {role.action_space}"
            )
        if not mask.any():
            raise self.fail(f"agent {agent!r} must act but its action mask allows no action")

    def random_action(self, agent: str, mask: np.ndarray | None) -> Any:
        space = self.spec.roles[self.spec.role_of[agent]].action_space
        if isinstance(space, spaces.Discrete):
            if mask is None:
                return int(self.rng.integers(space.n))
            legal = np.flatnonzero(mask)
            return int(legal[self.rng.integers(len(legal))])
        # Box: uniform inside finite bounds, a unit range where a bound is infinite.
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return self.rng.uniform(low, high).astype(np.float32).ravel()

    def check_result(self, result: StepResult, ended_so_far: set[str]) -> None:
        known = self.spec.role_of
        for agent, reward in result.rewards.items():
            if agent not in known:
                raise self.fail(f"reward for unknown agent {agent!r}; agents are {list(self.spec.agents)}")
            if not np.isfinite(reward):
                raise self.fail(f"agent {agent!r} received a non-finite reward {reward}")
        for agent, truncated in result.ended.items():
            if agent not in known:
                raise self.fail(f"unknown agent {agent!r} ended; agents are {list(self.spec.agents)}")
            if agent in ended_so_far:
                raise self.fail(f"agent {agent!r} ended twice in one episode")
            if truncated:
                if agent not in result.final_obs:
                    raise self.fail(f"agent {agent!r} was truncated but has no final observation")
                self.check_obs(agent, result.final_obs[agent], "final observation")


def check_env(
    factory: EnvFactory,
    spec: EnvSpec,
    episodes: int = 3,
    seed: int = 0,
    max_episode_steps: int = MAX_EPISODE_STEPS,
) -> dict[str, Any]:
    """Run `episodes` random episodes through the adapter and check the contract.

    Raises EnvironmentSpecError on the first violation (observation size or dtype, non-finite
    values, a mask with no legal action, an unknown or repeated acting agent, an episode longer
    than `max_episode_steps` steps, the env raising). Returns {"episodes", "steps", "mean_length",
    "mean_return": {role: mean episode return of one of its agents}}.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    checker = _Checker(spec, seed, max_episode_steps)
    returns: dict[str, list[float]] = {role: [] for role in spec.roles}
    total_steps = 0
    env = factory()
    try:
        for episode in range(episodes):
            checker.episode, checker.step = episode, 0
            episode_returns = _run_episode(env, checker, seed + episode)
            total_steps += checker.step
            for role_name, role in spec.roles.items():
                returns[role_name].append(
                    sum(episode_returns.get(agent, 0.0) for agent in role.agents) / len(role.agents)
                )
    finally:
        env.close()
    return {
        "episodes": episodes,
        "steps": total_steps,
        "mean_length": total_steps / episodes,
        "mean_return": {role: float(np.mean(values)) for role, values in returns.items()},
    }


def _run_episode(env: Any, checker: _Checker, seed: int) -> dict[str, float]:
    spec = checker.spec
    episode_returns: dict[str, float] = {}
    ended: set[str] = set()
    acted: set[str] = set()
    _guarded(checker, "reset", lambda: env.reset(seed=seed))
    while True:
        acting = _guarded(checker, "acting_agents()", env.acting_agents)
        if not acting:
            raise checker.fail("no agent is acting but the episode is not over")
        actions: dict[str, Any] = {}
        for agent in acting:
            if agent not in spec.role_of:
                raise checker.fail(f"acting agent {agent!r} is not one of possible_agents {list(spec.agents)}")
            if agent in ended or agent in actions:
                raise checker.fail(f"agent {agent!r} is asked to act but has already ended or acted")
            obs, mask = _guarded(checker, f"observe({agent!r})", lambda a=agent: env.observe(a))
            checker.check_obs(agent, obs, "observation")
            checker.check_mask(agent, mask)
            actions[agent] = checker.random_action(agent, mask)
        acted.update(actions)
        result = _guarded(checker, f"step with actions {actions}", lambda acts=actions: env.step(acts))
        checker.step += 1
        checker.check_result(result, ended)
        ended.update(result.ended)
        for agent, reward in result.rewards.items():
            episode_returns[agent] = episode_returns.get(agent, 0.0) + reward
        if result.episode_over:
            never_ended = sorted(acted - ended)
            if never_ended:
                raise checker.fail(
                    f"the episode is over but agents {never_ended} were never reported as terminated or truncated"
                )
            return episode_returns
        if checker.step >= checker.max_episode_steps:
            raise checker.fail(
                f"the episode is still running after {checker.max_episode_steps} steps; add a time limit "
                "(truncation) to the env"
            )


def _guarded(checker: _Checker, what: str, call: Callable[[], Any]) -> Any:
    """Run one adapter call, turning an exception from the env into a located check failure."""
    try:
        return call()
    except EnvironmentSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's env failing is what we report
        raise checker.fail(f"{what} raised {type(exc).__name__}: {exc}") from exc
