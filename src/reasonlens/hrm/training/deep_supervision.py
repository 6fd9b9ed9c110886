"""The paper's per-batch deep supervision (HRM paper Fig. 4 / Algorithm 2; seed 003 Task 3.1).

For every batch ``(x, y)``: start from the initial state, then ``segments`` times run one segment
``z, y_hat = model(z, x)``, take the loss against ``y``, **detach** ``z`` (so no gradient flows between
segments), back-propagate and step the optimizer. It works with any model of that call form — the
paper-notation :class:`reasonlens.hrm.HRM` in particular. The ACT models' equivalent is the trainer's
``supervision: per_batch`` (``reasonlens.hrm.training.trainer``); the official trainer's default instead keeps the
carry across batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from reasonlens.hrm.training.optimizers import AdamATan2


def default_criterion(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer targets (class per position), mean squared error for float targets."""
    if y.dtype in (torch.int32, torch.int64):
        return F.cross_entropy(y_hat.reshape(-1, y_hat.shape[-1]).float(), y.reshape(-1).long())
    return F.mse_loss(y_hat.float(), y.float())


def train_with_deep_supervision(
    model: torch.nn.Module,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]],
    segments: int,
    optimizer: torch.optim.Optimizer | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = default_criterion,
) -> list[list[float]]:
    """Train one pass over ``data``; return the loss of every segment of every batch.

    ``optimizer`` defaults to AdamATan2 (lr 1e-3, no weight decay).
    """
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    optimizer = optimizer or AdamATan2(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    history = []
    for x, y in data:
        z = None  # the model's initial state
        losses = []
        for _ in range(segments):
            z, y_hat = model(z, x)
            loss = criterion(y_hat, y)
            z = z.detach()  # critical: each segment is its own supervised step
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        history.append(losses)
    return history
