"""Roles: which agents of an environment one policy controls, derived from the agents' names.

A config lists `RoleRule`s (a name, a regex over agent names, and whether the role's agents form
one team). `build_env_spec` builds the environment once, matches every agent to exactly one
rule and checks that a role's agents share an observation size and action space, so that one
network can drive all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
from gymnasium import spaces

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.envs.encoding import Encoded
from mpimarl.envs.loader import EnvFactory
from mpimarl.errors import EnvironmentSpecError


@dataclass(frozen=True)
class RoleRule:
    """How a config names a role."""

    name: str
    """Role name, e.g. "predator"."""
    agents: str
    """Regex matched with `re.fullmatch` against agent names, e.g. "adversary_.*"."""
    team: bool
    """True: one policy controls all the role's agents in a match (one seat). False: each agent
    of the role is a separate seat, e.g. connect_four's two players drawn from one pool."""


@dataclass(frozen=True)
class RoleSpec:
    """A role as resolved against a concrete environment."""

    name: str
    agents: tuple[str, ...]
    """The role's agents, in the env's `possible_agents` order."""
    obs_size: int
    """Length of each agent's flat float32 observation."""
    obs_shape: tuple[int, ...]
    """The observation's shape before flattening, e.g. (6, 7, 2) for connect_four's board (the
    inner "observation" of a Dict with an action mask); (obs_size,) for non-array observations."""
    action_space: gymnasium.spaces.Space
    """Shared Discrete or Box action space."""
    has_mask: bool
    """True when the env provides action masks for the role's agents."""
    team: bool


@dataclass(frozen=True)
class EnvSpec:
    """Everything the trainers and the server need to know about the environment's agents."""

    env_id: str
    api: str
    """"aec", "parallel" or "gymnasium"."""
    agents: tuple[str, ...]
    """The env's `possible_agents`."""
    roles: dict[str, RoleSpec]
    """Role name -> spec, in the order of the config's rules."""
    role_of: dict[str, str]
    """Agent name -> role name."""

    def seats(self) -> list[tuple[str, tuple[str, ...]]]:
        """The seats of a match as (role, agents) pairs, ordered by their first agent.

        A team role is one seat holding all its agents; a non-team role gives one seat per agent.
        """
        seats: list[tuple[str, tuple[str, ...]]] = []
        for agent in self.agents:
            role = self.roles[self.role_of[agent]]
            if not role.team:
                seats.append((role.name, (agent,)))
            elif agent == role.agents[0]:
                seats.append((role.name, role.agents))
        return seats


def build_env_spec(factory: EnvFactory, rules: list[RoleRule]) -> EnvSpec:
    """Build one env (reset with seed 0) and map its agents to the roles named by `rules`.

    Raises EnvironmentSpecError naming the agent, rule or role at fault.
    """
    env_id = factory.env_id
    patterns = _compile_rules(env_id, rules)
    env = factory()
    try:
        env.reset(seed=0)
        agents = tuple(env.possible_agents)
        if not agents:
            raise EnvironmentSpecError(f"env {env_id!r} has no agents (possible_agents is empty)")
        role_of = _match_agents(env_id, agents, rules, patterns)
        roles: dict[str, RoleSpec] = {}
        for rule in rules:
            members = tuple(agent for agent in agents if role_of[agent] == rule.name)
            sizes = {agent: env.obs_size(agent) for agent in members}
            obs_shapes = {agent: _obs_shape(env, agent) for agent in members}
            action_spaces = {agent: env.action_space(agent) for agent in members}
            masks = {agent: _has_mask(env_id, env.observe, agent) for agent in members}
            first = members[0]
            _require_same(env_id, rule.name, "observation sizes", sizes)
            _require_same(env_id, rule.name, "action spaces", action_spaces)
            space = action_spaces[first]
            if not isinstance(space, (spaces.Discrete, spaces.Box)):
                raise EnvironmentSpecError(
                    f"env {env_id!r}: role {rule.name!r} (agent {first!r}) has action space "
                    f"{space}; mpimarl supports Discrete and Box action spaces"
                )
            roles[rule.name] = RoleSpec(
                name=rule.name,
                agents=members,
                obs_size=sizes[first],
                # Same sizes but different shapes is fine for an MLP, so not an error: such a role
                # just has no common board shape (a conv torso then refuses it).
                obs_shape=obs_shapes[first] if len(set(obs_shapes.values())) == 1 else (sizes[first],),
                action_space=space,
                # Some envs put the mask in infos for the acting agent only, so one is enough.
                has_mask=any(masks.values()),
                team=rule.team,
            )
    finally:
        env.close()
    return EnvSpec(env_id=env_id, api=factory.api, agents=agents, roles=roles, role_of=role_of)


def _compile_rules(env_id: str, rules: list[RoleRule]) -> list[re.Pattern[str]]:
    if not rules:
        raise EnvironmentSpecError(f"env {env_id!r}: no roles given; define at least one role")
    seen: set[str] = set()
    patterns = []
    for rule in rules:
        if rule.name in seen:
            raise EnvironmentSpecError(f"env {env_id!r}: role {rule.name!r} is defined twice")
        seen.add(rule.name)
        try:
            patterns.append(re.compile(rule.agents))
        except re.error as exc:
            raise EnvironmentSpecError(
                f"role {rule.name!r}: agents pattern {rule.agents!r} is not a valid regular "
                f"expression ({exc}); e.g. 'player_.*' or 'agent_[0-9]+'"
            ) from exc
    return patterns


def _match_agents(
    env_id: str, agents: tuple[str, ...], rules: list[RoleRule], patterns: list[re.Pattern[str]]
) -> dict[str, str]:
    described = ", ".join(f"{rule.name}={rule.agents!r}" for rule in rules)
    role_of: dict[str, str] = {}
    for agent in agents:
        matched = [rule.name for rule, pattern in zip(rules, patterns, strict=True) if pattern.fullmatch(agent)]
        if not matched:
            raise EnvironmentSpecError(
                f"env {env_id!r}: agent {agent!r} matches no role (roles: {described}); "
                f"every agent of {list(agents)} must match exactly one role's pattern"
            )
        if len(matched) > 1:
            raise EnvironmentSpecError(
                f"env {env_id!r}: agent {agent!r} matches several roles {matched} "
                f"(roles: {described}); make the patterns disjoint"
            )
        role_of[agent] = matched[0]
    for rule in rules:
        if rule.name not in role_of.values():
            raise EnvironmentSpecError(
                f"env {env_id!r}: role {rule.name!r} (pattern {rule.agents!r}) matches no agent; "
                f"the env's agents are {list(agents)}"
            )
    return role_of


def _require_same(env_id: str, role: str, what: str, values: dict[str, object]) -> None:
    first_agent, first = next(iter(values.items()))
    for agent, value in values.items():
        if value != first:
            raise EnvironmentSpecError(
                f"env {env_id!r}: role {role!r} mixes agents with different {what}: "
                f"{first_agent!r} has {first}, {agent!r} has {value}; one policy needs the same "
                "for all its agents, so split them into separate roles"
            )


def _obs_shape(env: MultiAgentEnv, agent: str) -> tuple[int, ...]:
    # The adapters know the unflattened shape; a hand-written MultiAgentEnv need not.
    obs_shape = getattr(env, "obs_shape", None)
    return tuple(obs_shape(agent)) if callable(obs_shape) else (env.obs_size(agent),)


def _has_mask(env_id: str, observe: Callable[[str], Encoded], agent: str) -> bool:
    try:
        _, mask = observe(agent)
    except Exception as exc:  # noqa: BLE001 - the env's own failure, reported with the agent
        raise EnvironmentSpecError(
            f"env {env_id!r}: observing agent {agent!r} right after reset raised {type(exc).__name__}: {exc}"
        ) from exc
    return mask is not None
