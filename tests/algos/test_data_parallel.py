"""Data-parallel PPO: a learner group's update equals one learner's update on the union batch.

The group's sum is done in process by two threads meeting at a barrier (the MPI layer's
`GroupComm.allreduce_sum` does the same sum with `Allreduce`; the MPI tests run it for real).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mpimarl.algos.data_parallel import group_update, minibatch_slices
from mpimarl.algos.networks import PolicyShape, RandomPolicy, flat_weights, load_flat_weights
from mpimarl.algos.ppo import PPOLearner, StreamRollout
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.envs.spec import RoleRule, build_env_spec
from mpimarl.rollout.runner import LEARNER, VectorMatches
from mpimarl.rollout.seating import random_key, seating


class ThreadSum:
    """`size` threads sum their buffers: each deposits, all meet, each reads the total."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._barrier = threading.Barrier(size)
        self._parts: dict[int, np.ndarray] = {}
        self.calls = 0

    def member(self, index: int) -> _Member:
        return _Member(self, index)

    def _sum(self, index: int, buf: np.ndarray) -> None:
        self._parts[index] = buf.copy()
        self._barrier.wait()
        total = sum(self._parts[i] for i in range(self._size))  # same order on every member
        self._barrier.wait()
        buf[:] = total
        if index == 0:
            self.calls += 1


class _Member:
    def __init__(self, owner: ThreadSum, index: int) -> None:
        self.owner = owner
        self.index = index

    @property
    def size(self) -> int:
        return self.owner._size

    def allreduce_sum(self, buf: np.ndarray) -> None:
        self.owner._sum(self.index, buf)


def _collect(learner: PPOLearner, seed: int, updates_worth: int) -> None:
    """Fill the learner's rollout with connect four against random (real environments)."""
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", False)])
    vm = VectorMatches([factory() for _ in range(3)], seed=seed)
    policies = {("random", "player"): RandomPolicy(learner.shape.action_space, np.random.default_rng(seed))}
    lineup = (random_key("player"),)
    for i in range(3):
        vm.start(i, seating(spec, i % 2, LEARNER, lineup))
    n = 0
    while learner.rollout.num_complete < updates_worth:
        for ep in vm.tick(policies, learner):
            n += 1
            vm.start(ep.env_index, seating(spec, n % 2, LEARNER, lineup))


def _concatenate(a: StreamRollout, b: StreamRollout, into: StreamRollout) -> None:
    """`into` holds a's transitions then b's (b's successor links shifted past a's)."""
    n = a.size + b.size
    if n > into.capacity:
        into.grow(n)
    for name in ("obs", "mask", "action", "logp", "value", "reward", "next_value", "chain_break", "complete"):
        arr = getattr(into, name)
        if arr is not None:
            arr[: a.size] = getattr(a, name)[: a.size]
            arr[a.size : n] = getattr(b, name)[: b.size]
    into.next_index[: a.size] = a.next_index[: a.size]
    nb = b.next_index[: b.size]
    into.next_index[a.size : n] = np.where(nb >= 0, nb + a.size, -1)
    into.size = n
    into.num_complete = a.num_complete + b.num_complete
    into.pending = {("a", s): i for s, i in a.pending.items()} | {("b", s): i + a.size for s, i in b.pending.items()}


@pytest.mark.parametrize("collected", [(96, 96), (96, 48)], ids=["equal", "one-cut-off"])
@pytest.mark.parametrize(("norm_adv", "value_norm"), [(True, False), (False, False), (True, True)],
                         ids=["norm_adv", "raw_adv", "value_norm"])
def test_group_of_two_with_half_batches_equals_one_learner_with_the_whole(norm_adv: bool, value_norm: bool,
                                                                          collected: tuple[int, int]) -> None:
    """Two ranks with part of the data each end the update with the weights of one rank with all of it.

    (96, 48): the second rank was cut off with half as much as the first (DD-PPO's straggler cut-off);
    the group still takes the per-sample mean over the union, not the mean of the two ranks' means.
    With value normalisation the ranks' normalisers fold in the union's returns, as one learner's does."""
    torch.set_num_threads(1)
    factory = resolve_env("pettingzoo.classic.connect_four_v3", {})
    spec = build_env_spec(factory, [RoleRule("player", "player_.*", False)])
    role = spec.roles["player"]
    shape = PolicyShape(role.obs_size, role.action_space, (32, 32), "tanh")
    # Full-batch steps (one minibatch), several epochs: several Adam steps on identical data.
    cfg = PPOConfig(num_envs=3, rollout_steps=96, epochs=3, minibatches=1, norm_adv=norm_adv, value_norm=value_norm)
    halves = [PPOLearner(shape, cfg, torch.device("cpu"), seed=s) for s in (1, 2)]
    whole = PPOLearner(shape, cfg, torch.device("cpu"), seed=3)
    start = flat_weights(halves[0].net)
    for learner in (halves[1], whole):
        load_flat_weights(learner.net, start.copy())  # a copy: the parameters would share its memory
    for learner, seed, n in zip(halves, (11, 12), collected):
        _collect(learner, seed, n)
    assert halves[1].rollout.num_complete < 0.6 * halves[0].rollout.num_complete or collected[0] == collected[1]
    _concatenate(halves[0].rollout, halves[1].rollout, whole.rollout)

    fake = ThreadSum(2)
    stats: list[object] = [None, None]
    extras = [np.array([100.0, 1.0]), np.array([50.0, 2.0])]

    def run(i: int) -> None:
        stats[i] = group_update(halves[i], fake.member(i), 0.0, extras[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    whole_stats = whole.update(0.0)

    w0, w1, w = (flat_weights(x.net) for x in (*halves, whole))
    assert np.abs(w - start).max() > 1e-4  # the update moved the weights (well past the tolerance below)
    np.testing.assert_array_equal(w0, w1)  # the group's ranks agree bit for bit
    np.testing.assert_allclose(w0, w, rtol=0, atol=2e-6)
    # One sum for the update's statistics (and one for the returns' moments), then one per minibatch step.
    assert fake.calls == 1 + value_norm + cfg.epochs * cfg.minibatches
    if value_norm:
        norms = [x.value_norm for x in (*halves, whole)]
        assert norms[0].count == norms[1].count == norms[2].count > 96
        assert norms[0].mean == norms[1].mean == pytest.approx(norms[2].mean, rel=1e-9)
        assert norms[0].var == norms[1].var == pytest.approx(norms[2].var, rel=1e-9)
    assert extras[0].tolist() == extras[1].tolist() == [150.0, 3.0]
    assert stats[0].samples + stats[1].samples == whole_stats.samples
    assert stats[0].value_loss == pytest.approx(whole_stats.value_loss, rel=1e-4)


def test_minibatch_slices_cover_every_sample_in_a_fixed_number_of_steps() -> None:
    """Every rank takes exactly `minibatches` steps, whatever its batch size."""
    for n in (0, 3, 10, 257):
        slices = minibatch_slices(n, 4)
        assert len(slices) == 4
        assert sum(s.stop - s.start for s in slices) == n
        assert max(s.stop - s.start for s in slices) - min(s.stop - s.start for s in slices) <= 1
