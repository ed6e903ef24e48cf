"""Data-parallel PPO (DD-PPO): several ranks train one policy by averaging their gradients.

Every rank of a learner group collects its own rollout and computes the PPO loss on its own
minibatches; after each backward pass the group sums ONE flat float32 buffer (every gradient scaled
by the rank's minibatch size, followed by that size and the loss terms), divides by the total size,
and every rank takes the same optimiser step. So the group's step is the step one learner would
take on the union of the ranks' minibatches, and the ranks' weights stay identical.

Advantages are normalised with the statistics of the group's union minibatch: the sums for every
minibatch of the update are summed over the group once, before the first step (one small float64
buffer per update, which also carries the caller's `extra` counters). With value normalisation the
normaliser folds in the moments of the group's returns (:func:`group_moments`), so it stays identical
on every rank and equal to one learner's over the union batch.

This module is compute only: the communication is a :class:`GradientGroup`, which the MPI layer
(:class:`mpimarl.comm.group.GroupComm`) implements with `Allreduce` on the group's communicator.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mpimarl.algos.adam import Adam
from mpimarl.config import PPOConfig

_TERMS = 5  # policy loss, value loss, entropy, approximate KL, clip fraction


class GradientGroup(Protocol):
    """The ranks of one learner group, as seen by the update: an in-place sum over them."""

    @property
    def size(self) -> int:
        """Number of ranks in the group."""
        ...

    def allreduce_sum(self, buf: np.ndarray) -> None:
        """Replace `buf` (a contiguous 1-D float32 or float64 array) by its sum over the group."""
        ...


class GroupLearner(Protocol):
    """What a group update needs of a learner (:class:`mpimarl.algos.ppo.PPOLearner`): its settings,
    network, optimiser, generator and device, and the steps of one PPO update around the minibatch loop."""

    cfg: PPOConfig
    net: nn.Module
    optimizer: Adam
    generator: torch.Generator
    device: torch.device

    def set_learning_rate(self, progress: float) -> float:
        """Set and return the learning rate for `progress` in [0, 1]."""
        ...

    def prepare_batch(self, group: GradientGroup | None = None) -> Any:
        """The update's batch (a :class:`mpimarl.algos.ppo.PPOBatch`), value targets normalised over `group`."""
        ...

    def minibatch_loss(self, b: Any, mb: torch.Tensor, mb_adv: torch.Tensor
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The clipped PPO loss of one minibatch and its terms."""
        ...

    def finish_update(self, b: Any, m: np.ndarray, lr: float, group: GradientGroup | None = None) -> Any:
        """Close the update (input normalisers folded over `group`) and return its statistics (a
        :class:`mpimarl.algos.ppo.UpdateStats`)."""
        ...


def group_moments(values: np.ndarray, group: GradientGroup) -> tuple[int, float, float]:
    """(count, mean, population variance) of `values` over every rank of `group` (one float64 sum)."""
    x = np.asarray(values, np.float64).ravel()
    buf = np.array([x.size, x.sum(), (x * x).sum()], np.float64)
    group.allreduce_sum(buf)
    n = int(buf[0])
    mean = buf[1] / n if n else 0.0
    return n, mean, max(buf[2] / n - mean * mean, 0.0) if n else 0.0


def feature_moments(x: np.ndarray, group: GradientGroup | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, per-feature mean, per-feature population variance) of the rows of `x`, over every rank
    of `group` when given (one float64 sum), for the input normalisers."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    buf = np.concatenate([[float(len(x))], x.sum(0), (x * x).sum(0)])
    if group is not None:
        group.allreduce_sum(buf)
    n, d = int(buf[0]), x.shape[1]
    if n == 0:
        return 0, np.zeros(d), np.ones(d)
    mean = buf[1 : 1 + d] / n
    return n, mean, np.maximum(buf[1 + d :] / n - mean * mean, 0.0)


def minibatch_slices(n: int, minibatches: int) -> list[slice]:
    """Exactly `minibatches` slices covering 0..n (sizes differ by at most one; some may be empty
    when n < minibatches), so every rank of a group takes the same number of steps."""
    edges = [(j * n) // minibatches for j in range(minibatches + 1)]
    return [slice(edges[j], edges[j + 1]) for j in range(minibatches)]


def _flat_grads(params: list[nn.Parameter], out: np.ndarray, scale: float, terms: tuple[torch.Tensor, ...]) -> None:
    """Write every parameter's gradient (times `scale`, zeros where missing), then the minibatch size
    `scale` and the loss `terms` times it, into `out`: flattened on the learner's device and copied
    to the host once (one transfer per minibatch, not one per parameter and term)."""
    grads = [torch.zeros(p.numel(), dtype=torch.float32, device=p.device) if p.grad is None
             else p.grad.detach().reshape(-1).float() for p in params]
    tail = torch.stack([t.detach() for t in terms]).double() * scale  # rounded to float32 like .item() was
    vec = torch.cat([torch.cat(grads) * scale, torch.full((1,), scale, device=tail.device), tail.float()])
    out[:] = vec.cpu().numpy()


def _load_grads(params: list[nn.Parameter], flat: np.ndarray) -> None:
    """Set every parameter's gradient from the flat host buffer (one host-to-device copy)."""
    device = params[0].device
    vec = torch.from_numpy(flat).to(device)
    offset = 0
    for p in params:
        n = p.numel()
        grad = vec[offset : offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = grad.clone()
        else:
            p.grad.copy_(grad)
        offset += n


def group_update(learner: GroupLearner, group: GradientGroup, progress: float,
                 extra: np.ndarray | None = None) -> Any:
    """One PPO update of `learner` as a member of `group` (see the module docstring).

    Every rank must call this the same number of times with the same `progress`. `extra`, a float64
    array, is summed over the group in place (one buffer with the advantage statistics). The
    returned statistics are the group's means.
    """
    cfg = learner.cfg
    lr = learner.set_learning_rate(progress)
    b = learner.prepare_batch(group)
    n = b.size
    slices = minibatch_slices(n, cfg.minibatches)
    perms = [torch.randperm(n, generator=learner.generator).to(learner.device) for _ in range(cfg.epochs)]

    # Group-wide advantage statistics of every minibatch of the update, and the caller's counters.
    steps = cfg.epochs * cfg.minibatches
    extra_n = 0 if extra is None else len(extra)
    stats = np.zeros(3 * steps + extra_n, np.float64)
    adv64 = b.adv.detach().to("cpu", torch.float64)
    for e, perm in enumerate(perms):
        p_cpu = perm.cpu()
        for j, sl in enumerate(slices):
            a = adv64[p_cpu[sl]]
            k = 3 * (e * cfg.minibatches + j)
            stats[k : k + 3] = (float(a.sum()), float((a * a).sum()), float(len(a)))
    if extra is not None:
        stats[3 * steps :] = extra
    group.allreduce_sum(stats)
    if extra is not None:
        extra[:] = stats[3 * steps :]

    params = [p for p in learner.net.parameters() if p.requires_grad]  # not the normalisers' statistics
    total = sum(p.numel() for p in params)
    flat = np.zeros(total + 1 + _TERMS, np.float32)  # gradients, minibatch size, loss terms
    sums = np.zeros(_TERMS)
    count = 0
    stop = False
    for e, perm in enumerate(perms):
        for j, sl in enumerate(slices):
            mb = perm[sl]
            size = len(mb)
            learner.optimizer.zero_grad(set_to_none=True)
            if size > 0:
                mb_adv = b.adv[mb]
                if cfg.norm_adv:
                    k = 3 * (e * cfg.minibatches + j)
                    s, q, m = stats[k : k + 3]
                    mean = s / m
                    std = float(np.sqrt(max(q - s * mean, 0.0) / (m - 1))) if m > 1 else 0.0
                    if m > 1:
                        mb_adv = (mb_adv - mean) / (std + 1e-8)
                loss, terms = learner.minibatch_loss(b, mb, mb_adv)
                loss.backward()
                _flat_grads(params, flat, float(size), terms)
            else:  # this rank has no sample in the step; it still takes part in the sum
                flat[:] = 0.0
            flat[total] = size
            group.allreduce_sum(flat)
            group_size = float(flat[total])
            if group_size == 0:
                continue
            _load_grads(params, flat[:total] / group_size)
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            learner.optimizer.step()
            terms_mean = flat[total + 1 :] / group_size
            sums += terms_mean
            count += 1
            # The group's KL (identical on every rank), so every rank stops at the same step.
            if cfg.target_kl is not None and terms_mean[3] > cfg.target_kl:
                stop = True
                break
        if stop:
            break
    return learner.finish_update(b, sums / max(count, 1), lr, group)
