"""Loading scripted policies by name, checking every action they return, and a start-up check.

The user-facing contract is in the package docstring (`mpimarl.baselines`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium
import numpy as np
from pydantic import BaseModel, ValidationError

from mpimarl.envs.base import MultiAgentEnv
from mpimarl.envs.spec import EnvSpec
from mpimarl.errors import ConfigError

REGISTRY: dict[str, str] = {
    "tactical": "mpimarl.baselines.connect_four:TacticalPlayer",
    "negamax": "mpimarl.baselines.negamax:NegamaxPlayer",
    "centre": "mpimarl.baselines.connect_four:CentrePlayer",
    "spread_heuristic": "mpimarl.baselines.mpe:SpreadHeuristic",
    "speaker_heuristic": "mpimarl.baselines.mpe:SpeakerHeuristic",
    "listener_heuristic": "mpimarl.baselines.mpe:ListenerHeuristic",
}
"""Short name -> import path of the scripted policies shipped with mpimarl."""

BASELINE_NAMES: tuple[str, ...] = tuple(REGISTRY)

_FACTORY_MARK = "__mpimarl_policy_factory__"
_PATH_FORM = "a registered name or an import path 'package.module:name'"

F = TypeVar("F", bound=Callable[..., Any])


class ScriptedPolicyError(ConfigError):
    """A scripted policy returned an illegal action (or failed) for an observation."""


def policy_factory(function: F) -> F:
    """Mark a function as a factory ``function(action_space, rng)`` returning a batched policy.

    Without the mark, a plain function is taken to act on one observation at a time.
    """
    setattr(function, _FACTORY_MARK, True)
    return function


def list_baselines() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered scripted policy."""
    out = []
    for name, path in REGISTRY.items():
        doc = inspect.getdoc(_import_target(name, path)) or ""
        out.append((name, doc.split("\n", 1)[0]))
    return out


# ---- parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyParameter:
    """One keyword parameter a scripted policy's factory accepts."""

    name: str
    annotation: str
    """Its type as written (e.g. 'int'), '' when not annotated."""
    default: Any
    """Its default; `inspect.Parameter.empty` when it must be given."""
    description: str

    @property
    def signature(self) -> str:
        """``depth: int = 4``."""
        kind = f": {self.annotation}" if self.annotation else ""
        default = "" if self.default is inspect.Parameter.empty else f" = {self.default!r}"
        return f"{self.name}{kind}{default}"

    def __str__(self) -> str:
        """``depth: int = 4  (Plies searched ...)``."""
        return self.signature + (f"  ({self.description})" if self.description else "")


# Leading parameters mpimarl itself passes: (action_space, rng) to a factory, (obs, mask) to a
# per-observation function (whose `rng` is passed by name).
_PASSED = {"factory": ("action_space", "rng"), "function": ("obs", "mask", "rng")}


def _params_model(target: Any) -> type[BaseModel] | None:
    """The pydantic model a policy class declares for its parameters (class attribute ``Params``)."""
    model = getattr(target, "Params", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _keyword_parameters(target: Any) -> tuple[list[inspect.Parameter], bool]:
    """The parameters of `target`'s call that mpimarl does not pass itself, and whether it takes **kwargs."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return [], True
    params = list(signature.parameters.values())
    is_factory = inspect.isclass(target) or getattr(target, _FACTORY_MARK, False)
    passed = _PASSED["factory" if is_factory else "function"]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    skip = 2 if len(params) >= 2 and all(p.kind in positional for p in params[:2]) else 0
    rest = [p for p in params[skip:] if p.name not in passed]
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest)
    named = [p for p in rest if p.kind in (*positional, inspect.Parameter.KEYWORD_ONLY)]
    return named, var_keyword


def policy_parameters(name: str) -> list[PolicyParameter]:
    """The keyword parameters scripted policy `name` accepts (`kwargs` in a config, ``name:key=value``
    on the command line). ConfigError when the name cannot be resolved."""
    target = _import_target(name, _resolve_path(name))
    model = _params_model(target)
    if model is not None:
        out = []
        for key, field in model.model_fields.items():
            annotation = getattr(field.annotation, "__name__", str(field.annotation))
            default = inspect.Parameter.empty if field.is_required() else field.default
            out.append(PolicyParameter(key, annotation, default, field.description or ""))
        return out
    named, _ = _keyword_parameters(target)
    return [
        PolicyParameter(p.name, "" if p.annotation is inspect.Parameter.empty else
                        getattr(p.annotation, "__name__", str(p.annotation)), p.default, "")
        for p in named
    ]


def check_policy_kwargs(name: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate keyword parameters for scripted policy `name`; return them as it will receive them.

    A policy class declaring a pydantic ``Params`` model has every value checked against it; any
    other factory or function has the names checked against its signature (its values are checked
    when it is built). Raises ConfigError naming the parameter, its value and what is allowed.
    """
    kwargs = dict(kwargs or {})
    target = _import_target(name, _resolve_path(name))
    allowed = policy_parameters(name)
    names = [p.name for p in allowed]
    listing = ", ".join(p.signature for p in allowed) if allowed else "none"
    _, var_keyword = _keyword_parameters(target)
    model = _params_model(target)
    for key in kwargs:
        if not isinstance(key, str) or (key not in names and (model is not None or not var_keyword)):
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"scripted policy {name!r} has no parameter {key!r} (given {key}={kwargs[key]!r})"
                              f"{hint}; its parameters: {listing}")
    if model is None:
        return kwargs
    try:
        model.model_validate(kwargs)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            problems.append(f"{key}={error.get('input')!r}: {error['msg']}")
        raise ConfigError(f"scripted policy {name!r}: bad parameter {'; '.join(problems)} "
                          f"(its parameters: {listing})") from None
    return kwargs


def parse_policy_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``'negamax:depth=4'`` -> ('negamax', {'depth': 4}): a scripted policy and its parameters.

    The form is ``NAME[:KEY=VALUE[:KEY=VALUE ...]]``, where NAME is a registered name or an import
    path ``package.module:name`` (so ``pkg.mod:Player:depth=2`` works too). Values are read as YAML
    scalars (``4`` an int, ``0.5`` a float, ``true`` a bool, anything else a string). ConfigError for a
    parameter that is not ``KEY=VALUE`` or is given twice; the parameters themselves are checked when
    the policy is loaded (`check_policy_kwargs`).
    """
    import yaml

    text = text.strip()
    segments = text.split(":")
    if segments[0] in REGISTRY:
        split = 1
    else:
        split = next((i for i, seg in enumerate(segments) if i > 0 and "=" in seg), len(segments))
    name, params = ":".join(segments[:split]), segments[split:]
    kwargs: dict[str, Any] = {}
    for item in params:
        key, eq, raw = (part.strip() for part in item.partition("="))
        if not eq or not key or not raw:
            raise ConfigError(f"scripted policy {text!r}: parameter {item!r} is not KEY=VALUE; write e.g. "
                              f"{name}:depth=4 ({name}:KEY=VALUE[:KEY=VALUE...])")
        if key in kwargs:
            raise ConfigError(f"scripted policy {text!r}: parameter {key!r} is given twice")
        try:
            kwargs[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            kwargs[key] = raw
    return name, kwargs


def format_policy_spec(name: str, kwargs: Mapping[str, Any] | None) -> str:
    """The inverse of `parse_policy_spec`: ('negamax', {'depth': 4}) -> 'negamax:depth=4'."""
    return ":".join([name, *(f"{k}={v}" for k, v in (kwargs or {}).items())])


# ---- resolving a name -------------------------------------------------------------------------


def _suggest(word: str) -> str:
    close = difflib.get_close_matches(word, BASELINE_NAMES, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _resolve_path(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"scripted policy must be {_PATH_FORM}, got {name!r}")
    name = name.strip()
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" not in name:
        raise ConfigError(
            f"scripted policy {name!r} is not a registered name{_suggest(name)} (registered: "
            f"{', '.join(BASELINE_NAMES)}); for your own policy use an import path 'package.module:name'"
        )
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"scripted policy {name!r} is malformed; use {_PATH_FORM}")
    return name


def _import_target(name: str, path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure is reported with the path
        raise ConfigError(
            f"scripted policy {name!r}: importing module {module_name!r} failed with "
            f"{type(exc).__name__}: {exc}{_suggest(attribute)}"
        ) from exc
    target = getattr(module, attribute, None)
    if target is None:
        nearby = difflib.get_close_matches(attribute, [n for n in dir(module) if not n.startswith("_")], n=3)
        also = f"; the module has {', '.join(nearby)}" if nearby else ""
        raise ConfigError(
            f"scripted policy {name!r}: module {module_name!r} has no attribute {attribute!r}"
            f"{also}{_suggest(attribute)}"
        )
    if not callable(target):
        raise ConfigError(
            f"scripted policy {name!r}: {path!r} is a {type(target).__name__}, not a function "
            "fn(obs, mask) -> action nor a class built as cls(action_space, rng)"
        )
    return target


# ---- the checked wrapper ------------------------------------------------------------------------


def _legal(mask: np.ndarray | None, row: int, n: int) -> str:
    legal = range(n) if mask is None else np.flatnonzero(mask[row]).tolist()
    return f"legal actions: {list(legal)}"


class ScriptedPolicy:
    """A scripted policy behind the batched `act` contract, checking every action it returns."""

    def __init__(self, label: str, act_batch: Callable[[np.ndarray, np.ndarray | None], Any],
                 action_space: gymnasium.spaces.Space) -> None:
        """`act_batch` maps (obs batch, mask batch) to a sequence of actions; `label` names it in errors."""
        self.label = label
        self.space = action_space
        self._act = act_batch
        self._discrete = isinstance(action_space, gymnasium.spaces.Discrete)

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch: (B,) int64 for Discrete, (B, action_dim) float32 for Box."""
        try:
            raw = self._act(obs, mask)
        except ScriptedPolicyError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code failing, reported with its name
            raise ScriptedPolicyError(
                f"scripted policy {self.label} raised {type(exc).__name__}: {exc} (given a batch of "
                f"{obs.shape[0]} observations of {obs.shape[1:]} values"
                f"{'' if mask is None else ' with action masks'})"
            ) from exc
        if self._discrete:
            return self._check_discrete(raw, obs.shape[0], mask)
        return self._check_box(raw, obs.shape[0])

    def _fail(self, what: str) -> ScriptedPolicyError:
        return ScriptedPolicyError(f"scripted policy {self.label} {what}")

    def _check_discrete(self, raw: Any, batch: int, mask: np.ndarray | None) -> np.ndarray:
        n = int(self.space.n)
        actions = np.asarray(raw)
        if actions.shape != (batch,):
            raise self._fail(f"returned actions of shape {actions.shape} for {batch} observations; "
                             f"expected one integer in [0, {n}) per observation")
        if not np.issubdtype(actions.dtype, np.integer):
            row = 0
            if actions.dtype == object:
                row = next((i for i, a in enumerate(actions) if not isinstance(a, (int, np.integer))), 0)
            raise self._fail(f"chose action {actions[row]!r} ({actions.dtype}) for observation {row} of the "
                             f"batch; Discrete({n}) actions must be integers; {_legal(mask, row, n)}")
        outside = (actions < 0) | (actions >= n)
        if outside.any():
            row = int(np.argmax(outside))
            raise self._fail(f"chose action {actions[row]} for observation {row} of the batch, outside "
                             f"Discrete({n}) (mpimarl adds the space's start itself); {_legal(mask, row, n)}")
        if mask is not None:
            allowed = mask[np.arange(batch), actions]
            if not allowed.all():
                row = int(np.argmin(allowed))
                raise self._fail(f"chose action {actions[row]} for observation {row} of the batch, which its "
                                 f"action mask forbids; {_legal(mask, row, n)}")
        return actions.astype(np.int64, copy=False)

    def _check_box(self, raw: Any, batch: int) -> np.ndarray:
        shape = tuple(self.space.shape)
        size = int(np.prod(shape, dtype=np.int64))
        allowed = {shape, (size,)}
        if isinstance(raw, np.ndarray):
            # A batched policy's array: one shape check, not one per row.
            if raw.shape[:1] != (batch,) or raw.shape[1:] not in allowed:
                raise self._fail(f"returned actions of shape {raw.shape} for {batch} observations; the Box "
                                 f"action space needs ({batch}, *{shape}) or ({batch}, {size})")
            items: Any = raw
        else:
            items = list(raw)
            if len(items) != batch:
                raise self._fail(f"returned {len(items)} actions for {batch} observations")
            for row, item in enumerate(items):
                if np.shape(item) not in allowed:
                    raise self._fail(f"chose an action of shape {np.shape(item)} for observation {row} of the "
                                     f"batch; the Box action space needs shape {shape} (or {(size,)})")
        try:
            actions = np.asarray(items, dtype=np.float32).reshape(batch, size)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"returned actions that are not float arrays: {exc}") from exc
        finite = np.isfinite(actions).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise self._fail(f"chose the non-finite action {actions[row].tolist()} for observation {row} of "
                             f"the batch; Box actions must be finite (mpimarl clips them to {self.space})")
        return actions


def _takes_rng(function: Callable[..., Any]) -> bool:
    try:
        return "rng" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def _per_observation(function: Callable[..., Any], rng: np.random.Generator, kwargs: dict[str, Any]
                     ) -> Callable[[np.ndarray, np.ndarray | None], list[Any]]:
    extra = {**kwargs, "rng": rng} if _takes_rng(function) else kwargs

    def act_batch(obs: np.ndarray, mask: np.ndarray | None) -> list[Any]:
        if mask is None:
            return [function(o, None, **extra) for o in obs]
        return [function(o, m, **extra) for o, m in zip(obs, mask)]

    return act_batch


def load_scripted(name: str, action_space: gymnasium.spaces.Space, seed: int,
                  kwargs: Mapping[str, Any] | None = None) -> ScriptedPolicy:
    """The scripted policy `name` (registered name or 'package.module:name') for `action_space`,
    given the keyword parameters `kwargs` (checked by `check_policy_kwargs`).

    Its randomness comes from ``numpy.random.default_rng(seed)``. Raises ConfigError when the name
    cannot be resolved, imported or built for this action space, or a parameter is unknown or bad.
    """
    path = _resolve_path(name)
    label = repr(name) if path == name else f"{name!r} ({path})"
    if not isinstance(action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.Box)):
        raise ConfigError(f"scripted policy {label}: action space {action_space} is neither Discrete nor Box")
    target = _import_target(name, path)
    params = check_policy_kwargs(name, kwargs)
    if params:
        label += " with " + ", ".join(f"{k}={v!r}" for k, v in params.items())
    rng = np.random.default_rng(seed)
    if not (inspect.isclass(target) or getattr(target, _FACTORY_MARK, False)):
        return ScriptedPolicy(label, _per_observation(target, rng, params), action_space)
    try:
        policy = target(action_space, rng, **params)
    except Exception as exc:  # noqa: BLE001 - reported with the policy's name and the space
        raise ConfigError(
            f"scripted policy {label}: building it for action space {action_space} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    act = getattr(policy, "act", None)
    if not callable(act):
        raise ConfigError(
            f"scripted policy {label}: {path} built a {type(policy).__name__}, which has no "
            "act(obs_batch, mask_batch) method"
        )
    return ScriptedPolicy(label, act, action_space)


# ---- start-up check -----------------------------------------------------------------------------

SCRIPTED_KEY = "scripted"


def check_scripted(name: str, factory: Callable[[], MultiAgentEnv], spec: EnvSpec, role: str, episodes: int = 2,
                   seed: int = 0, max_steps: int = 10_000, kwargs: Mapping[str, Any] | None = None) -> list[float]:
    """Play `episodes` episodes with scripted policy `name` on every agent of `role` and uniformly
    random legal actions for every other agent; return the role's mean return per episode.

    `factory` is an `mpimarl.envs.EnvFactory` (or any callable building a `MultiAgentEnv`) and
    `spec` its `mpimarl.envs.build_env_spec` result; `kwargs` are the policy's keyword parameters.
    An episode longer than `max_steps` steps is cut short. Raises ConfigError if the role is unknown
    or the policy cannot be loaded for it, and ScriptedPolicyError on the first illegal action; both
    name the env and the role.
    """
    if role not in spec.roles:
        raise ConfigError(f"scripted policy {name!r}: env {spec.env_id!r} has no role {role!r}; "
                          f"its roles are {list(spec.roles)}")
    role_spec = spec.roles[role]
    # Deferred: the rollout runner pulls in torch and PPO, which loading a policy does not need.
    from mpimarl.algos.shapes import RandomPolicy
    from mpimarl.rollout.runner import ActingPolicy, VectorMatches

    env = factory()
    env_id = spec.env_id
    returns: list[float] = []
    try:
        policy = load_scripted(name, role_spec.action_space, seed, kwargs)
        rng = np.random.default_rng(seed)
        policies: dict[Any, ActingPolicy] = {SCRIPTED_KEY: policy}
        seating: dict[str, Any] = {}
        for agent in env.possible_agents:
            if agent in role_spec.agents:
                seating[agent] = SCRIPTED_KEY
            else:
                seating[agent] = ("random", agent)
                policies[seating[agent]] = RandomPolicy(env.action_space(agent), rng)
        matches = VectorMatches([env], seed)
        for k in range(episodes):
            matches.start(0, seating, seed=seed + k)
            for _ in range(max_steps):
                finished = matches.tick(policies)
                if finished:
                    returns.append(finished[0].side_returns(SCRIPTED_KEY)[0])
                    break
            else:
                matches.stop(0)
    except ConfigError as exc:
        # Same class (ScriptedPolicyError or ConfigError), with where it happened.
        raise type(exc)(f"env {env_id!r}, role {role!r}: {exc}") from exc
    finally:
        env.close()
    return returns
