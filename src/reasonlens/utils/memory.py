"""Activation memory of a training step, measured as the bytes autograd saves for backward. Unlike a
peak-memory reading this works on every device (CPU included) and counts only what the gradient's
depth costs, which is what the 1-step gradient is about."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class SavedBytes:
    total: int = 0


@contextlib.contextmanager
def count_saved_bytes() -> Iterator[SavedBytes]:
    """``with count_saved_bytes() as saved: loss = ...`` — ``saved.total`` is the bytes of every tensor
    autograd saved for backward inside the block."""
    saved = SavedBytes()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved
