"""The environment ids a user can name in a config on this installation (`python -m mpimarl envs`).

Nothing is built here: PettingZoo modules are imported (and skipped when an optional dependency
such as rlcard is missing) and Gymnasium registry entries are kept when their entry point's
module imports. A few OpenSpiel games are listed as examples (every registered game loads as
``openspiel:NAME``).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from types import ModuleType

from mpimarl.envs.base import API_AEC, API_GYMNASIUM, API_PARALLEL

# Packages whose environment modules are listed; a missing package is skipped.
PETTINGZOO_PACKAGES = ("pettingzoo.classic", "mpe2")
# OpenSpiel games listed as examples: small poker games and matrix games can be evaluated exactly.
OPENSPIEL_GAMES = ("connect_four", "goofspiel", "kuhn_poker", "leduc_poker", "liars_dice", "matrix_rps", "tic_tac_toe")


def list_environments() -> list[tuple[str, str]]:
    """(env id, api) for every environment this installation can build, sorted by id.

    The api is the one `resolve_env` would use for that id: "parallel" when a PettingZoo module
    has ``parallel_env``, else "aec"; "gymnasium" for ``gymnasium:ID`` ids; for ``openspiel:NAME``
    ids "parallel" for simultaneous-move games, else "aec".
    """
    return list(_pettingzoo_environments()) + list(_gymnasium_environments()) + list(_openspiel_environments())


@functools.lru_cache(maxsize=1)
def _pettingzoo_environments() -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for package_name in PETTINGZOO_PACKAGES:
        package = _try_import(package_name)
        if package is None or not hasattr(package, "__path__"):
            continue
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name == "all_modules":
                continue
            module_id = f"{package_name}.{info.name}"
            module = _try_import(module_id)
            if module is None:
                continue
            if callable(getattr(module, "parallel_env", None)):
                found.append((module_id, API_PARALLEL))
            elif callable(getattr(module, "env", None)):
                found.append((module_id, API_AEC))
    return tuple(sorted(found))


def _gymnasium_environments() -> tuple[tuple[str, str], ...]:
    # Not cached: users may register more ids after the first call.
    import gymnasium

    found: list[tuple[str, str]] = []
    for gym_id, spec in gymnasium.registry.items():
        entry_point = spec.entry_point
        if isinstance(entry_point, str):
            module_name, _, attribute = entry_point.partition(":")
            if not _importable(module_name) or _needs_mujoco_py(module_name, attribute):
                continue
        elif entry_point is None or getattr(entry_point, "__module__", "") == "gymnasium.envs":
            # gymnasium registers placeholders (mujoco-py, shimmy) in gymnasium.envs that only
            # raise "install X"; a callable from anywhere else is a real user registration.
            continue
        found.append((f"gymnasium:{gym_id}", API_GYMNASIUM))
    return tuple(sorted(found))


@functools.lru_cache(maxsize=1)
def _openspiel_environments() -> tuple[tuple[str, str], ...]:
    if _try_import("pyspiel") is None:
        return ()
    import pyspiel

    from mpimarl.envs.openspiel import game_api

    return tuple((f"openspiel:{name}", game_api(pyspiel.load_game(name))) for name in OPENSPIEL_GAMES)


def _needs_mujoco_py(module_name: str, attribute: str) -> bool:
    """gymnasium-robotics re-registers the MuJoCo v2/v3 ids with classes that import fine but raise
    "install mujoco-py" when built: not buildable unless mujoco_py itself is importable."""
    target = getattr(sys.modules.get(module_name), attribute, None)
    needs = isinstance(target, type) and any(base.__name__ == "MuJocoPyEnv" for base in target.__mro__)
    return needs and not _importable("mujoco_py")


@functools.cache
def _importable(module_name: str) -> bool:
    # Cached because a failing import is retried from scratch by Python every time.
    return _try_import(module_name) is not None


def _try_import(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - missing optional dependencies raise many exception types
        return None
