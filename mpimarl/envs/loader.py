"""Turn the env id written in a config into a factory of `MultiAgentEnv`s.

Accepted ids:

``package.module``
    A module exposing PettingZoo's factories, e.g. ``pettingzoo.classic.connect_four_v3`` or
    ``mpe2.simple_spread_v3``. ``parallel_env(**kwargs)`` is used when the module has it (every
    agent acts each step), else ``env(**kwargs)`` (AEC, turn based).
``package.module:factory``
    Any callable in an importable module, called as ``factory(**kwargs)``. The API is detected
    from what it returns: a PettingZoo ``AECEnv`` or ``ParallelEnv``, or a ``gymnasium.Env``
    (wrapped ones included). This is how users plug in their own environments.
``gymnasium:ID``
    A Gymnasium registry id, built with ``gymnasium.make(ID, **kwargs)``, e.g.
    ``gymnasium:CartPole-v1``; its single agent is called "agent".
``openspiel:GAME``
    An OpenSpiel game, loaded with ``pyspiel.load_game(GAME, kwargs)`` (the kwargs are the game's
    parameters, e.g. ``{players: 3}``), e.g. ``openspiel:kuhn_poker``; its agents are
    ``player_0 .. player_{n-1}`` (see `mpimarl.envs.openspiel`). Sequential games resolve as "aec"
    (one player acts at a time), simultaneous-move games as "parallel".

``kwargs`` come from the config unchanged (for instance mpe2 envs take
``continuous_actions``). Every failure raises `EnvironmentSpecError` naming the id and the cause;
``python -m mpimarl envs`` lists the ids this installation can build.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import gymnasium
from pettingzoo import AECEnv, ParallelEnv

from mpimarl.envs.base import API_AEC, API_GYMNASIUM, API_PARALLEL, APIS, MultiAgentEnv
from mpimarl.envs.gymnasium_single import GymnasiumSingleAgentAdapter
from mpimarl.envs.pettingzoo_aec import PettingZooAECAdapter
from mpimarl.envs.pettingzoo_parallel import PettingZooParallelAdapter
from mpimarl.errors import EnvironmentSpecError

GYMNASIUM_PREFIX = "gymnasium:"
OPENSPIEL_PREFIX = "openspiel:"
LIST_HINT = "run `python -m mpimarl envs` to list the environments this installation can build"
ID_FORMS = "'package.module', 'package.module:factory', 'gymnasium:ID' or 'openspiel:GAME'"

_ADAPTERS: dict[str, Callable[[Any], MultiAgentEnv]] = {
    API_AEC: PettingZooAECAdapter,
    API_PARALLEL: PettingZooParallelAdapter,
    API_GYMNASIUM: GymnasiumSingleAgentAdapter,
}


def detect_api(env: Any) -> str | None:
    """The API of a raw environment object ("aec", "parallel" or "gymnasium"), None if unsupported."""
    if isinstance(env, AECEnv):
        return API_AEC
    if isinstance(env, ParallelEnv):
        return API_PARALLEL
    if isinstance(env, gymnasium.Env):
        return API_GYMNASIUM
    return None


def wrap_env(env: Any, env_id: str = "<env>") -> MultiAgentEnv:
    """Put the adapter matching `env`'s API around a raw PettingZoo/Gymnasium environment."""
    api = detect_api(env)
    if api is None:
        raise EnvironmentSpecError(_unsupported_type_message(env_id, env))
    return _ADAPTERS[api](env)


class EnvFactory:
    """Builds a fresh `MultiAgentEnv` for one env id each time it is called.

    It need not be pickled: every rank resolves the id from the config itself.
    """

    def __init__(self, env_id: str, api: str, make_raw: Callable[[], Any]) -> None:
        """`make_raw` returns a raw environment of API `api` ("aec", "parallel" or "gymnasium")."""
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        self.env_id = env_id
        self.api = api
        self._make_raw = make_raw

    def __call__(self) -> MultiAgentEnv:
        """Build one environment wrapped in its adapter."""
        raw = _build(self.env_id, self._make_raw)
        api = detect_api(raw)
        if api != self.api:
            raise EnvironmentSpecError(
                f"env {self.env_id!r} was resolved as a {self.api!r} env but its factory now "
                f"returned {type(raw).__name__} ({api or 'unsupported'})"
            )
        return _ADAPTERS[api](raw)

    def __repr__(self) -> str:
        """Show the id and API."""
        return f"EnvFactory({self.env_id!r}, api={self.api!r})"


def resolve_env(env_id: str, kwargs: dict[str, Any] | None = None) -> EnvFactory:
    """Resolve `env_id` (see the module docstring for the forms) into an `EnvFactory`.

    One environment is built and closed here, to detect its API and to surface bad ids or
    kwargs at config load rather than inside a worker.
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise EnvironmentSpecError(f"env id must be a non-empty string of the form {ID_FORMS}, got {env_id!r}")
    env_id = env_id.strip()
    kwargs = dict(kwargs or {})
    bad_keys = [key for key in kwargs if not isinstance(key, str)]
    if bad_keys:
        raise EnvironmentSpecError(f"env {env_id!r}: kwargs keys must be strings, got {bad_keys!r}")

    if env_id.startswith(OPENSPIEL_PREFIX):
        return _openspiel_factory(env_id, kwargs)
    if env_id.startswith(GYMNASIUM_PREFIX):
        make_raw = _gymnasium_maker(env_id, kwargs)
    elif ":" in env_id:
        make_raw = _factory_maker(env_id, kwargs)
    else:
        make_raw = _module_maker(env_id, kwargs)

    probe = _build(env_id, make_raw)
    api = detect_api(probe)
    if api is None:
        raise EnvironmentSpecError(_unsupported_type_message(env_id, probe))
    try:
        probe.close()
    except Exception:  # noqa: BLE001 - a probe that fails to close must not block the run
        pass
    return EnvFactory(env_id, api, make_raw)


class _AdapterFactory(EnvFactory):
    """An `EnvFactory` whose maker builds the `MultiAgentEnv` itself.

    OpenSpiel games have no raw environment object of one of the three APIs: the adapter is written
    on pyspiel directly. `api` still says how the env behaves ("aec" or "parallel").
    """

    def __call__(self) -> MultiAgentEnv:
        """Build one environment."""
        return _build(self.env_id, self._make_raw)


# ---- the id forms -------------------------------------------------------------------------------


def _openspiel_factory(env_id: str, kwargs: dict[str, Any]) -> EnvFactory:
    # Imported here so that `import mpimarl.envs` does not load pyspiel unless a config names a game.
    from mpimarl.envs.openspiel import OpenSpielEnv, game_api, load_game

    name = env_id[len(OPENSPIEL_PREFIX) :]
    if not name:
        raise EnvironmentSpecError(f"env id {env_id!r} names no game; use 'openspiel:GAME', e.g. openspiel:kuhn_poker")
    game = load_game(env_id, name, kwargs)
    # A game object is immutable and shared: every environment only creates its own states.
    make_env = functools.partial(OpenSpielEnv, game)
    _build(env_id, make_env).close()  # surface a game that cannot even start here, not in a worker
    return _AdapterFactory(env_id, game_api(game), make_env)


def _gymnasium_maker(env_id: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    gym_id = env_id[len(GYMNASIUM_PREFIX) :]
    try:
        gymnasium.spec(gym_id)
    except gymnasium.error.Error as exc:
        from mpimarl.envs.catalog import list_environments  # lazy: only on this error path

        buildable = [i for i, _ in list_environments() if i.startswith(GYMNASIUM_PREFIX)]
        close = difflib.get_close_matches(env_id, buildable, n=3)
        suggestion = f"; did you mean {', '.join(close)}?" if close else ""
        raise EnvironmentSpecError(
            f"env {env_id!r}: {gym_id!r} is not a registered gymnasium id ({exc}){suggestion}; {LIST_HINT}"
        ) from exc
    except ModuleNotFoundError as exc:  # "gymnasium:pkg:Id" whose pkg is missing
        raise EnvironmentSpecError(f"env {env_id!r}: {exc}; {LIST_HINT}") from exc
    return functools.partial(gymnasium.make, gym_id, **kwargs)


def _factory_maker(env_id: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    module_name, _, attribute = env_id.partition(":")
    if not module_name or not attribute:
        raise EnvironmentSpecError(f"env id {env_id!r} is malformed; use {ID_FORMS}")
    module = _import(env_id, module_name)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise EnvironmentSpecError(
            f"env {env_id!r}: module {module_name!r} has no attribute {attribute!r}; {LIST_HINT}"
        )
    if not callable(factory):
        raise EnvironmentSpecError(
            f"env {env_id!r}: {attribute!r} in module {module_name!r} is a "
            f"{type(factory).__name__}, not a callable that returns an environment"
        )
    return functools.partial(factory, **kwargs)


def _module_maker(env_id: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    module = _import(env_id, env_id)
    for name in ("parallel_env", "env"):
        factory = getattr(module, name, None)
        if callable(factory):
            return functools.partial(factory, **kwargs)
    raise EnvironmentSpecError(
        f"env {env_id!r}: module {env_id!r} has neither parallel_env() nor env(), so it is not a "
        f"PettingZoo environment module; name a factory with 'module:function', or {LIST_HINT}"
    )


# ---- helpers ----------------------------------------------------------------------------------


def _import(env_id: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise EnvironmentSpecError(
                f"env {env_id!r}: no module named {missing!r}{_suggest_module(module_name)}; {LIST_HINT}"
            ) from exc
        raise EnvironmentSpecError(
            f"env {env_id!r}: importing {module_name!r} failed because its dependency "
            f"{missing!r} is not installed; install it or {LIST_HINT}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any import-time failure is reported with the id
        raise EnvironmentSpecError(
            f"env {env_id!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _suggest_module(module_name: str) -> str:
    """'; did you mean X?' for a near-miss of a catalogued environment module, else ''."""
    from mpimarl.envs.catalog import list_environments  # lazy: only on this error path

    known = [env_id for env_id, _ in list_environments() if not env_id.startswith(GYMNASIUM_PREFIX)]
    close = difflib.get_close_matches(module_name, known, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _build(env_id: str, make_raw: Callable[[], Any]) -> Any:
    try:
        return make_raw()
    except EnvironmentSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported with the id
        keywords = getattr(make_raw, "keywords", None)
        with_kwargs = f" with kwargs {keywords}" if keywords else ""
        raise EnvironmentSpecError(
            f"env {env_id!r}: building it{with_kwargs} raised {type(exc).__name__}: {exc}"
        ) from exc


def _unsupported_type_message(env_id: str, env: Any) -> str:
    return (
        f"env {env_id!r}: its factory returned a {type(env).__module__}.{type(env).__qualname__}, "
        "which is neither a PettingZoo AECEnv or ParallelEnv nor a gymnasium.Env; " + LIST_HINT
    )
