"""Which device each rank computes on: the device policy, as pure code.

- Only ranks that *learn* hold a GPU: trainers, the ranks of data-parallel learner groups and the
  learners fed by IMPALA actors. Rank 0 (the server, evaluation) and actor ranks always run on the CPU.
- GPUs are dealt among the learner ranks of one node, in node-local rank order: the k-th learner of
  the node takes GPU ``k % gpus``. Ranks that see different GPUs (a scheduler that binds GPUs per
  task and sets ``CUDA_VISIBLE_DEVICES`` per rank) are dealt separately, each over what it sees.
- More learners than GPUs (``trainer.gpu_oversubscription``): ``warn`` (share GPUs round-robin and
  say so once), ``share`` (share silently) or ``strict`` (a start-up error, exit 2): GPUs in
  exclusive-process mode take one process each.
- Acting stays on the CPU: a learner on a GPU acts with a CPU copy of its weights, refreshed after
  every update (:class:`mpimarl.algos.ppo.PPOLearner`), and frozen opponents live on the CPU, so a
  rollout step makes no host<->device round trip.

Nothing here imports MPI: the launcher (:mod:`mpimarl.roles.launch`) gathers each node's facts on
the node-local communicator and calls :func:`deal_devices`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mpimarl.errors import ConfigError

PREFERENCES = ("auto", "cpu", "cuda")
"""Values of ``trainer.device``."""

OVERSUBSCRIPTION = ("warn", "share", "strict")
"""Values of ``trainer.gpu_oversubscription``."""

CUBLAS_WORKSPACE = ":4096:8"
"""``CUBLAS_WORKSPACE_CONFIG`` that makes cuBLAS deterministic (CUDA >= 10.2)."""


@dataclass(frozen=True)
class NodeRank:
    """What one rank of a node says about itself before devices are dealt."""

    learns: bool
    """Whether the rank learns (a trainer, a learner group member, an IMPALA learner)."""
    gpus: int
    """CUDA devices the rank sees (0 without CUDA)."""
    visible: str | None = None
    """Its ``CUDA_VISIBLE_DEVICES`` (None: unset, every GPU of the node)."""


@dataclass(frozen=True)
class NodeDevices:
    """The outcome of dealing one node's devices: a device string per node-local rank, and a warning
    to print once (None when there is nothing to say)."""

    devices: tuple[str, ...]
    warning: str | None = None


def deal_devices(ranks: Sequence[NodeRank], preference: str, oversubscription: str = "warn") -> NodeDevices:
    """Deal one node's GPUs among its learner ranks (`ranks` in node-local rank order).

    `preference` is ``trainer.device``: ``cpu`` puts every rank on the CPU; ``auto`` gives learners a
    GPU where their rank sees one, else the CPU; ``cuda`` is the same but a learner that sees no GPU
    is an error. Non-learners always get ``cpu``. Raises ConfigError naming the setting.
    """
    if preference not in PREFERENCES:
        raise ConfigError(f"trainer.device must be one of {list(PREFERENCES)}, got {preference!r}")
    if oversubscription not in OVERSUBSCRIPTION:
        raise ConfigError(f"trainer.gpu_oversubscription must be one of {list(OVERSUBSCRIPTION)}, "
                          f"got {oversubscription!r}")
    devices = ["cpu"] * len(ranks)
    if preference == "cpu":
        return NodeDevices(tuple(devices))
    # Learners grouped by what they see; each group deals its own GPUs.
    groups: dict[tuple[str | None, int], list[int]] = {}
    for i, r in enumerate(ranks):
        if r.learns:
            groups.setdefault((r.visible, r.gpus), []).append(i)
    warnings = []
    for (visible, gpus), members in groups.items():
        if gpus <= 0:
            if preference == "cuda":
                raise ConfigError(f"trainer.device is 'cuda' but CUDA is not available on this node "
                                  f"(node-local rank {members[0]} learns and sees no GPU); use trainer.device=auto "
                                  f"or cpu")
            continue
        for k, i in enumerate(members):
            devices[i] = f"cuda:{k % gpus}"
        if len(members) > gpus:
            seen = "every GPU of the node" if visible is None else f"CUDA_VISIBLE_DEVICES={visible}"
            text = (f"{len(members)} learner ranks share {gpus} GPU{'s' if gpus > 1 else ''} on this node "
                    f"(node-local ranks {members}, {seen})")
            if oversubscription == "strict":
                raise ConfigError(f"trainer.gpu_oversubscription is 'strict' but {text}; use fewer learner ranks "
                                  f"per node, more GPUs, or trainer.gpu_oversubscription=warn|share")
            if oversubscription == "warn":
                warnings.append(f"{text}; round-robin (trainer.gpu_oversubscription=share silences this, "
                                f"strict makes it an error)")
    return NodeDevices(tuple(devices), "; ".join(warnings) if warnings else None)


def check_groups_uniform(groups: Sequence[Sequence[int]], devices: Sequence[str]) -> None:
    """Every rank of a data-parallel learner group must compute on the same kind of device: CPU and
    CUDA arithmetic differ in the last bits, so the group's weights would drift apart and fail its
    checksum. `devices[r]` is world rank r's device string; raises ConfigError naming the setting."""
    for ranks in groups:
        kinds = {r: devices[r].split(":")[0] for r in ranks}
        if len(set(kinds.values())) > 1:
            where = ", ".join(f"rank {r}: {devices[r]}" for r in ranks)
            raise ConfigError(f"trainer.device: the learner group of ranks {list(ranks)} mixes CPU and CUDA ({where}); "
                              f"its ranks must compute alike: put the group on nodes that all have GPUs, or set "
                              f"trainer.device=cpu")


def apply_device(device: str) -> torch.device:
    """The rank's torch device; for a GPU also make it the current CUDA device (so library handles
    and stray allocations land there, not on GPU 0)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def set_determinism(on: bool) -> None:
    """``trainer.deterministic``: ask torch, cuDNN and cuBLAS for deterministic kernels (an error for
    any op that has none). Call before the first CUDA operation: cuBLAS reads its workspace setting
    once."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def describe_rank(device: str, mpi_library: str, host: str | None = None, local_rank: int = 0) -> dict[str, Any]:
    """What the run file records about one rank: host, node-local rank, device, GPU name, library
    versions, threads."""
    dev = torch.device(device)
    cuda = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if cuda is not None and torch.backends.cudnn.is_available() else None
    return {
        "host": host if host is not None else platform.node(),
        "local_rank": local_rank,
        "device": str(dev),
        "gpu_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": cuda,
        "cudnn": None if cudnn is None else str(cudnn),
        "mpi_library": mpi_library,
        "torch_threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
