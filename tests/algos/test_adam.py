"""mpimarl's Adam against torch.optim.Adam: the same bits, the same state layout, and no torch._dynamo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mpimarl.algos.adam import Adam
from mpimarl.checkpoint import read_checkpoint, write_checkpoint
from tests.conftest import REPO


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 7, 5),
                         nn.Tanh(), nn.Linear(5, 3))


def _train(net: nn.Module, opt: Adam | torch.optim.Adam, steps: int, seed: int, lr_at: dict[int, float] | None = None,
           start: int = 0) -> None:
    """Steps `start`..`steps - 1` of a fixed stream of batches (`seed`), the learning rate set by `lr_at`."""
    gen = torch.Generator().manual_seed(seed)
    for i in range(steps):
        x = torch.randn(16, 2, 6, 7, generator=gen)
        if i < start:
            continue
        if lr_at and i in lr_at:
            for group in opt.param_groups:
                group["lr"] = lr_at[i]
        out = net(x)
        loss = out.pow(2).mean() + out.sum() * 1e-3
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if i % 3 == 2:  # a parameter without a gradient this step keeps its moments and its count
            net[-1].bias.grad = None
        nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step()


def test_updates_are_bit_identical_to_torch_adam_with_a_changing_learning_rate() -> None:
    ours, theirs = _net(0), _net(0)
    schedule = {0: 3e-3, 20: 1e-3, 35: 2e-4}
    _train(ours, Adam(ours.parameters(), lr=3e-3, eps=1e-5), 50, seed=1, lr_at=schedule)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=3e-3, eps=1e-5), 50, seed=1, lr_at=schedule)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(ours.parameters()), next(_net(0).parameters()))  # it did train


@pytest.mark.parametrize("first, second", [("ours", "torch"), ("torch", "ours"), ("ours", "ours")])
def test_a_checkpointed_state_continues_the_same_in_either_optimiser(tmp_path: Path, first: str, second: str) -> None:
    """Saved through the checkpoint store (int keys, tensors, no pickle) after 10 steps and loaded into a
    fresh optimiser, 10 more steps end where 20 uninterrupted steps of torch's Adam end."""
    make = {"ours": lambda p: Adam(p, lr=1e-3, eps=1e-5), "torch": lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-5)}
    reference = _net(2)
    _train(reference, torch.optim.Adam(reference.parameters(), lr=1e-3, eps=1e-5), 20, seed=3)

    net = _net(2)
    opt = make[first](net.parameters())
    _train(net, opt, 10, seed=3)
    path = write_checkpoint(tmp_path / "c.h5", {"net": net.state_dict(), "optimizer": opt.state_dict()},
                            generation=1, rank=1)
    back = read_checkpoint(path, generation=1, rank=1)
    resumed = _net(5)
    resumed.load_state_dict(back["net"])
    opt2 = make[second](resumed.parameters())
    opt2.load_state_dict(back["optimizer"])
    _train(resumed, opt2, 20, seed=3, start=10)
    for a, b in zip(resumed.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_a_state_of_other_parameters_is_refused() -> None:
    small, big = nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    opt = Adam(small.parameters(), lr=1e-3)
    small(torch.ones(1, 3)).sum().backward()
    opt.step()
    with pytest.raises(ValueError, match="holds \\[2\\] parameters"):
        Adam(big.parameters(), lr=1e-3).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="no parameters"):
        Adam([], lr=1e-3)


def test_a_learner_update_does_not_import_torch_dynamo() -> None:
    """The reason this optimiser exists: a PPO update never pulls in torch._dynamo (about 2 s per rank)."""
    code = """
import sys
import torch
from mpimarl.algos.networks import PolicyShape
from mpimarl.algos.ppo import PPOLearner
from mpimarl.config import PPOConfig
from mpimarl.envs.loader import resolve_env
from mpimarl.rollout.runner import LEARNER, VectorMatches
factory = resolve_env("gymnasium:CartPole-v1", {})
shape = PolicyShape(factory().obs_size("agent"), factory().action_space("agent"), (16,), "tanh")
cfg = PPOConfig(num_envs=2, rollout_steps=64, epochs=1, minibatches=2)
learner = PPOLearner(shape, cfg, torch.device("cpu"), seed=0)
vm = VectorMatches([factory() for _ in range(cfg.num_envs)], seed=0)
for i in range(cfg.num_envs):
    vm.start(i, {"agent": LEARNER})
while not learner.ready:
    for ep in vm.tick({}, learner):
        vm.start(ep.env_index, {"agent": LEARNER})
learner.update(progress=0.5)
print(len(learner.optimizer.state) > 0, "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"], out.stdout  # it updated, and without torch._dynamo
