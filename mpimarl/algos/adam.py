"""Adam (Kingma and Ba 2015) as `torch.optim.Adam` computes it, without importing `torch.optim`.

Why not `torch.optim.Adam` itself: every `torch.optim.Optimizer` imports `torch._dynamo` (and sympy
with it) the first time one is built, which costs each trainer rank about 2 s of CPU at start-up, as
much as importing torch, for a compiler mpimarl never uses. On a workstation that is a tenth of a
short job; on a cluster it is thousands of ranks reading those modules from a shared file system at
once. This optimiser makes the same updates: with the defaults PPO uses (no weight decay, no AMSGrad,
not compiled) it is torch's single-tensor Adam operation for operation, so on the CPU it gives the
same bits (tests/algos/test_adam.py), and its `state_dict` has torch's layout, so a checkpoint written
by either loads into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """Adam over one group of parameters: `zero_grad`, `step`, `param_groups[0]["lr"]` (what the learning-
    rate schedule sets), `state_dict` and `load_state_dict`, as `torch.optim.Adam` offers them."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got no parameters to optimise")
        if not lr >= 0.0 or not eps >= 0.0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam needs lr >= 0, eps >= 0 and betas in [0, 1); got {lr=}, {eps=}, {betas=}")
        self.param_groups: list[dict[str, Any]] = [
            {"lr": float(lr), "betas": (float(betas[0]), float(betas[1])), "eps": float(eps), "params": self.params}]
        self.state: dict[torch.nn.Parameter, dict[str, Any]] = {}
        """Per parameter with a gradient so far: its update count `step` and the moments `exp_avg`, `exp_avg_sq`."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (None, or zeros with set_to_none=False)."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient (the others keep their moments and count)."""
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in self.params:
            grad = p.grad
            if grad is None:
                continue
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            state["step"] += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            # torch keeps the count as a float32 tensor and reads it back as a Python float: the same
            # number for any count below 2**24, and so the same corrections.
            count = float(state["step"])
            step_size = lr / (1 - beta1**count)
            bias_correction2_sqrt = (1 - beta2**count) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: per-parameter state keyed by the parameter's index, then the one group's settings."""
        index = {p: i for i, p in enumerate(self.params)}
        state = {index[p]: {"step": torch.tensor(float(s["step"])), "exp_avg": s["exp_avg"].clone(),
                            "exp_avg_sq": s["exp_avg_sq"].clone()} for p, s in self.state.items()}
        group = self.param_groups[0]
        settings = {"lr": group["lr"], "betas": group["betas"], "eps": group["eps"], "weight_decay": 0,
                    "amsgrad": False, "maximize": False}
        return {"state": state, "param_groups": [{**settings, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from `state_dict`'s output (this class's or torch.optim.Adam's, for the same parameters)."""
        groups = saved["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"the saved optimiser state holds {[len(g['params']) for g in groups]} parameters in "
                             f"{len(groups)} group(s); this optimiser has one group of {len(self.params)}")
        if groups[0].get("weight_decay", 0) or groups[0].get("amsgrad", False):
            raise ValueError("the saved optimiser state uses weight decay or AMSGrad, which this Adam does not")
        state: dict[torch.nn.Parameter, dict[str, Any]] = {}
        for key, s in saved["state"].items():
            p = self.params[int(key)]
            for name in ("exp_avg", "exp_avg_sq"):
                if tuple(s[name].shape) != tuple(p.shape):
                    raise ValueError(f"the saved {name} of parameter {key} has shape {tuple(s[name].shape)}, "
                                     f"the parameter {tuple(p.shape)}")
            step = s["step"]
            state[p] = {"step": int(step.item() if isinstance(step, torch.Tensor) else step),
                        "exp_avg": torch.as_tensor(s["exp_avg"]).to(p.device, p.dtype).clone(),
                        "exp_avg_sq": torch.as_tensor(s["exp_avg_sq"]).to(p.device, p.dtype).clone()}
        self.state = state
        group = self.param_groups[0]
        group["lr"] = float(groups[0]["lr"])
        group["betas"] = tuple(float(b) for b in groups[0]["betas"])
        group["eps"] = float(groups[0]["eps"])
