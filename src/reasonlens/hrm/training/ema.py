"""Exponential moving average of a model's weights (TRM's ``EMAHelper``, ``ema_rate`` 0.999).

``shadow ← rate·shadow + (1 − rate)·param`` after every optimizer step, over trainable parameters
only: the puzzle-embedding table is a buffer and is not averaged (as upstream). Evaluate and
checkpoint :meth:`EMA.averaged_copy`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, rate: float = 0.999):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        names = [n for n, p in model.named_parameters() if n in self.shadow]
        params = dict(model.named_parameters())
        shadows = [self.shadow[n] for n in names]
        torch._foreach_mul_(shadows, self.rate)
        torch._foreach_add_(shadows, [params[n].detach() for n in names], alpha=1.0 - self.rate)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s trainable parameters with the averages."""
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name])

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the averaged weights (buffers copied as they are)."""
        clone = copy.deepcopy(model)
        self.copy_to(clone)
        return clone

    def state_dict(self) -> dict:
        return {"rate": self.rate, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state is missing parameters: {sorted(missing)[:5]}")
        self.rate = state["rate"]
        for name, value in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name].copy_(value)
