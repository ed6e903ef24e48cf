"""Scripted policies: fixed opponents, partners and evaluation anchors written by hand.

A config names a scripted policy by a registered short name (``python -m mpimarl baselines`` lists
them, `list_baselines` returns them) or by an import path ``package.module:name``. ``name`` is one
of:

* a **per-observation callable** ``fn(obs, mask) -> action``. ``obs`` is ONE flat float32
  observation, exactly what mpimarl's adapters produce (a board of shape (6, 7, 2) arrives raveled
  row-major, 84 values; a Dict observation arrives as its "observation" entry); ``mask`` is the
  bool action mask of that observation, or None when the environment has none. It returns an int
  in ``[0, n)`` for a Discrete(n) space (mpimarl adds the space's ``start``) or a float array of
  the Box's shape (or raveled), which mpimarl clips to the bounds as it does for learned policies.
  If ``fn`` has a parameter named ``rng`` it is also passed a `numpy.random.Generator`;
* a **class**, or a function decorated with `policy_factory`, called as
  ``factory(action_space, rng)`` and returning an object with a batched
  ``act(obs_batch, mask_batch) -> actions`` like `mpimarl.algos.networks.RandomPolicy`: ``obs_batch``
  is (B, obs_size) float32, ``mask_batch`` (B, n) bool or None, ``actions`` (B,) ints or
  (B, action_dim) floats. This is the fast form for policies evaluated over thousands of games.

The Generator is seeded from the run's seed, so evaluations against a scripted policy repeat
exactly: scripted policies must draw randomness from it, never from global state.

Every action is checked: a masked-out, out-of-range, non-integer (Discrete) or wrongly shaped or
non-finite (Box) action, or an exception inside the policy, raises `ScriptedPolicyError` naming the
policy, the action and the legal ones. A name that cannot be imported or called raises
`mpimarl.errors.ConfigError` naming the path, the cause and the nearest registered names.
`check_scripted` plays a few episodes to surface these errors at start-up rather than mid-run.

**Parameters.** A factory's keyword parameters beyond ``(action_space, rng)`` (a function's beyond
``(obs, mask)``) can be set: ``kwargs: {depth: 4}`` in a config's baseline, ``negamax:depth=4`` on
the command line (`parse_policy_spec`). A class may declare them as a pydantic model in its
``Params`` class attribute (as `mpimarl.baselines.negamax.NegamaxPlayer` does): then every value is
checked at load, and `policy_parameters` lists them with their descriptions. Otherwise the names are
checked against the signature. An unknown or bad parameter raises ConfigError naming it and its value.
"""

from mpimarl.baselines.scripted import (
    BASELINE_NAMES,
    REGISTRY,
    PolicyParameter,
    ScriptedPolicy,
    ScriptedPolicyError,
    check_policy_kwargs,
    check_scripted,
    format_policy_spec,
    list_baselines,
    load_scripted,
    parse_policy_spec,
    policy_factory,
    policy_parameters,
)

__all__ = [
    "BASELINE_NAMES",
    "REGISTRY",
    "ScriptedPolicy",
    "ScriptedPolicyError",
    "PolicyParameter",
    "check_policy_kwargs",
    "check_scripted",
    "format_policy_spec",
    "list_baselines",
    "load_scripted",
    "parse_policy_spec",
    "policy_factory",
    "policy_parameters",
]
