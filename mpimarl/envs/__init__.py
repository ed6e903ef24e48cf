"""Environments: one contract (`MultiAgentEnv`) over PettingZoo AEC/parallel and Gymnasium envs.

``loader`` turns a config's env id into an `EnvFactory`, ``spec`` maps agents to roles,
``checker`` runs the contract check users run on their own env, ``catalog`` lists known ids.
"""

from mpimarl.envs.base import MultiAgentEnv, StepResult
from mpimarl.envs.catalog import list_environments
from mpimarl.envs.checker import check_env
from mpimarl.envs.loader import EnvFactory, resolve_env, wrap_env
from mpimarl.envs.spec import EnvSpec, RoleRule, RoleSpec, build_env_spec

__all__ = [
    "EnvFactory",
    "EnvSpec",
    "MultiAgentEnv",
    "RoleRule",
    "RoleSpec",
    "StepResult",
    "build_env_spec",
    "check_env",
    "list_environments",
    "resolve_env",
    "wrap_env",
]
