"""Export a stored policy for use outside mpimarl: ONNX or TorchScript, plus a JSON sidecar.

``mpimarl export RUN.h5 POLICY[@VERSION] --out policy.onnx`` (or ``policy.pt``) writes the policy's
actor only (no critic):

- inputs: ``obs``, float32 ``(batch, obs_size)``: the *encoded* observation, as
  :meth:`mpimarl.analysis.StoredPolicy.encode` makes it (a raveled Box, a one-hot Discrete, the
  ``observation`` entry of a masked Dict, or ``gymnasium.spaces.flatten``); and, for a Discrete
  role whose environment gives an action mask, ``mask``, bool ``(batch, n)``: True for a legal action;
- output: ``logits`` ``(batch, n)`` for a Discrete action space (masked actions hold -1e8; the
  greedy action is ``argmax + start``), or ``mean`` ``(batch, *action_shape)`` flattened to
  ``(batch, action_dim)`` for a Box (the greedy action is the mean clipped to ``[low, high]``; the
  sidecar carries ``log_std`` for sampling).

The sidecar (``policy.onnx.json`` beside it) describes the run and snapshot, the layout, the
observation encoding, the action space and the tensors, so a consumer needs nothing of this package.
Both files are written to temporary names and renamed at the end: a failed export leaves nothing.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np

from mpimarl.errors import ConfigError, MpimarlError, RunFileError

if TYPE_CHECKING:
    import torch

    from mpimarl.analysis import Run, StoredPolicy

FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
"""File suffix of ``--out`` -> export format."""

SIDECAR_FORMAT = "mpimarl-policy/1"
"""``format`` of the sidecar JSON; bump when its keys change meaning."""

ONNX_OPSET = 18
"""ONNX opset of exported models (onnxruntime 1.16 and later run it)."""


class ExportError(MpimarlError):
    """The policy or the output path cannot be exported (the message says why); nothing was written."""


def export_policy(run_path: str | Path, ref: str, out: str | Path) -> list[Path]:
    """Export stored policy `ref` (POLICY or POLICY@VERSION) of run file `run_path` to `out`.

    Returns the written paths (the model, then its sidecar ``<out>.json``). Raises an MpimarlError
    (exit 2 from the CLI) naming the problem, before anything is written, for an unknown suffix,
    a missing extra, an unknown policy or version, or a layout this exporter cannot express.
    """
    from mpimarl.analysis import load_run
    from mpimarl.render import parse_policy_ref

    target = Path(out)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {target}: the suffix must be one of {', '.join(FORMATS)} (ONNX or TorchScript)")
    if fmt == "onnx":
        _require_onnx()
    if not target.parent.is_dir():
        raise ConfigError(f"--out {target}: the folder {target.parent} does not exist")
    policy_id, version = parse_policy_ref(ref)
    run = load_run(run_path)
    try:
        stored = run.policy(policy_id, version)
    except RunFileError as exc:
        raise ExportError(f"{policy_id}@{version if version is not None else 'latest'} cannot be exported: {exc}"
                          ) from None
    module = ActorExport.check(stored, run.context().spec.roles[stored.role].has_mask)
    sidecar = describe(run, stored, module.masked, fmt)
    sidecar_path = target.with_name(target.name + ".json")
    tmp_model = target.with_name(f".{target.name}.{os.getpid()}.partial")
    tmp_sidecar = sidecar_path.with_name(f".{sidecar_path.name}.{os.getpid()}.partial")
    try:
        if fmt == "onnx":
            _write_onnx(module, stored, tmp_model)
        else:
            _write_torchscript(module, stored, tmp_model)
        tmp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n")
        tmp_model.replace(target)
        tmp_sidecar.replace(sidecar_path)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for tmp in (tmp_model, tmp_sidecar):
            tmp.unlink(missing_ok=True)
    return [target, sidecar_path]


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the extra: pip install -e '.[export]' ({exc}); or export TorchScript "
                          "with --out policy.pt") from None


# ---------------------------------------------------------------------------------------------
# The exported module
# ---------------------------------------------------------------------------------------------


def _actor_module(stored: StoredPolicy) -> torch.nn.Module:
    import torch

    from mpimarl.algos.networks import MASKED_LOGIT

    net = stored.net
    trunk, head = net._parts[0], net._parts[1]  # noqa: SLF001 - the actor path of ActorCritic.act

    class Actor(torch.nn.Module):
        """Encoded observation (and mask) -> logits or Box means."""

        def __init__(self) -> None:
            super().__init__()
            self.trunk = trunk
            self.head = head

        def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            out = self.head(self.trunk(obs))
            if mask is not None:
                out = out.masked_fill(~mask, MASKED_LOGIT)
            return out

    return Actor().eval()


class ActorExport:
    """A stored policy's actor, checked exportable: the module and whether it takes a mask."""

    def __init__(self, module: torch.nn.Module, masked: bool, example: tuple[torch.Tensor, ...]) -> None:
        self.module = module
        self.masked = masked
        self.example = example

    @classmethod
    def check(cls, stored: StoredPolicy, has_mask: bool) -> ActorExport:
        """ExportError unless `stored` is an MLP or conv actor over a Discrete or Box action space;
        `has_mask`: its role's environment gives action masks (the module then takes one)."""
        import torch

        shape = stored.shape
        if shape.torso not in ("mlp", "conv"):
            raise ExportError(f"{stored.label}: layout {shape.layout!r} has torso {shape.torso!r}; the exporter knows "
                              "'mlp' and 'conv'")
        if not isinstance(stored.action_space, gymnasium.spaces.Discrete | gymnasium.spaces.Box):
            raise ExportError(f"{stored.label}: action space {stored.action_space} cannot be exported; the exporter "
                              "writes Discrete (logits) and Box (means) policies")
        masked = bool(shape.discrete and has_mask)
        obs = torch.zeros(2, shape.obs_size)
        example = (obs, torch.ones(2, shape.action_dim, dtype=torch.bool)) if masked else (obs,)
        return cls(_actor_module(stored), masked, example)

    @property
    def input_names(self) -> list[str]:
        """``obs`` (and ``mask``)."""
        return ["obs", "mask"] if self.masked else ["obs"]


def _write_onnx(export: ActorExport, stored: StoredPolicy, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1)
    dynamic = {"obs": {0: batch}, **({"mask": {0: batch}} if export.masked else {})}
    output = "logits" if stored.shape.discrete else "mean"
    quiet = io.StringIO()
    try:
        with redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(export.module, export.example, input_names=export.input_names,
                                        output_names=[output], dynamic_shapes=dynamic, dynamo=True,
                                        opset_version=ONNX_OPSET, verbose=False)
            program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - the exporter's many error types: one clear message
        raise ExportError(f"{stored.label} (layout {stored.shape.layout!r}) cannot be exported to ONNX: "
                          f"{type(exc).__name__}: {exc}") from None


def _write_torchscript(export: ActorExport, stored: StoredPolicy, path: Path) -> None:
    import torch

    try:
        traced = torch.jit.trace(export.module, export.example)
        traced.save(str(path))
    except Exception as exc:  # noqa: BLE001 - tracing's many error types: one clear message
        raise ExportError(f"{stored.label} (layout {stored.shape.layout!r}) cannot be traced to TorchScript: "
                          f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The sidecar
# ---------------------------------------------------------------------------------------------


def _raw_observation_space(factory: Callable[[], Any], agent: str) -> gymnasium.spaces.Space | None:
    """`agent`'s observation space in the raw environment (None where it has none: OpenSpiel)."""
    env = factory()
    try:
        raw = getattr(env, "raw_env", None)
        space = getattr(raw, "observation_space", None)
        if callable(space):  # PettingZoo: per agent; Gymnasium: an attribute
            space = space(agent)
        return space if isinstance(space, gymnasium.spaces.Space) else None
    finally:
        env.close()


def _observation_encoding(space: gymnasium.spaces.Space) -> dict[str, Any]:
    """How a raw observation from `space` becomes the ``obs`` input (see mpimarl.envs.encoding)."""
    spaces = gymnasium.spaces
    if isinstance(space, spaces.Box):
        return {"encoding": "box", "detail": "the array as float32, raveled in C order", "shape": list(space.shape)}
    if isinstance(space, spaces.Dict) and "observation" in space.spaces and "action_mask" in space.spaces:
        inner = _observation_encoding(space.spaces["observation"])
        return {**inner, "detail": f"observation['observation']: {inner['detail']}; the mask input is "
                "observation['action_mask'] as bool", "mask_from": "observation['action_mask']"}
    if isinstance(space, spaces.Discrete):
        return {"encoding": "one_hot", "detail": f"one-hot of (value - {int(space.start)}) over {int(space.n)} "
                "values", "n": int(space.n), "start": int(space.start)}
    return {"encoding": "flatten", "detail": "gymnasium.spaces.flatten(space, observation) as float32"}


def _action(space: gymnasium.spaces.Space, stored: StoredPolicy) -> dict[str, Any]:
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"space": "Discrete", "n": int(space.n), "start": int(space.start),
                "greedy": f"argmax(logits) + {int(space.start)}",
                "sample": "categorical over softmax(logits)"}
    log_std = stored.net.log_std.detach().cpu().numpy().astype(float).tolist()
    return {"space": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
            "low": np.asarray(space.low, float).ravel().tolist(),
            "high": np.asarray(space.high, float).ravel().tolist(),
            "log_std": log_std,
            "greedy": "clip(mean, low, high), reshaped to shape",
            "sample": "clip(mean + exp(log_std) * normal(0, 1), low, high)"}


def describe(run: Run, stored: StoredPolicy, masked: bool, fmt: str) -> dict[str, Any]:
    """The sidecar JSON of an export: where the policy came from, its inputs, outputs and spaces."""
    ctx = run.context()
    role = ctx.spec.roles[stored.role]
    raw_space = _raw_observation_space(ctx.factory, role.agents[0])
    observation = {"size": stored.shape.obs_size, "raw_space": str(raw_space),
                   **(_observation_encoding(raw_space) if raw_space is not None else
                      {"encoding": "array", "detail": "the environment's observation array as float32, raveled"})}
    if masked and "mask_from" not in observation:
        observation["mask_from"] = "the environment's legal actions (info['action_mask'] or the game's legal moves)"
    n = stored.shape.action_dim
    inputs: list[dict[str, Any]] = [{"name": "obs", "dtype": "float32", "shape": ["batch", stored.shape.obs_size]}]
    if masked:
        inputs.append({"name": "mask", "dtype": "bool", "shape": ["batch", n], "meaning": "True: the action is legal"})
    output = {"name": "logits" if stored.shape.discrete else "mean", "dtype": "float32", "shape": ["batch", n]}
    if stored.shape.discrete and masked:
        output["masked_value"] = -1e8
    return {
        "format": SIDECAR_FORMAT,
        "model_format": fmt,
        "run": str(run.path),
        "run_name": run.attrs.get("name"),
        "env_id": ctx.config.env.id,
        "env_kwargs": ctx.config.env.kwargs,
        "policy_id": stored.policy_id,
        "version": stored.version,
        "role": stored.role,
        "agents": list(role.agents),
        "layout": stored.shape.layout,
        "inputs": inputs,
        "output": output,
        "observation": observation,
        "action": _action(stored.action_space, stored),
    }

