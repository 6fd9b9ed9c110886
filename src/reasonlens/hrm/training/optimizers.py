"""AdamATan2 in pure PyTorch, with the exact update of the official CUDA kernel
(imoneoi/adam-atan2 ``csrc/adam_atan2.cu``).

The official HRM imports ``adam_atan2`` (imoneoi/adam-atan2), whose pip install often ships without
its compiled backend (``ModuleNotFoundError: adam_atan2_backend``) and only builds for sm_80–90; the
usual workaround, ``adam-atan2-pytorch``, has different constants. This module is the same update
written with tensor ops, so it runs on CPU, CUDA and MPS. Per element, step t starting at 1::

    p ← p · (1 − lr·wd)                                   # decoupled decay, before the update
    m ← lerp(m, g, 1 − β1)
    v ← lerp(v, g², 1 − β2)
    p ← p − lr/(1 − β1^t) · atan2(m, sqrt(v) / sqrt(1 − β2^t))

There is no ε: atan2 is bounded and well defined at 0, which makes the update scale-invariant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.optimizer import Optimizer


class AdamATan2(Optimizer):
    def __init__(
        self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 1e-2
    ):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid betas: {betas} (each must be in [0, 1))")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"].item()
                _adam_atan2_update(
                    param,
                    param.grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=wd,
                    step=step,
                )
        return loss


def _adam_atan2_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    step: float,
) -> None:
    param.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.lerp_(grad.square(), 1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom = exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)
    param.add_(torch.atan2(exp_avg, denom), alpha=-step_size)
