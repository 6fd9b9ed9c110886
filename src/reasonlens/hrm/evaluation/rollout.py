"""Evaluation of HRM-family models on a test split (sapientinc/HRM ``pretrain.py::evaluate``).

Every test batch starts from a fresh carry and runs until every slot halts — in eval mode that is
exactly ``halt_max_steps`` ACT steps — and the metrics of that last ACT step are summed over batches and
divided by the number of scored rows: **exact accuracy** (every scored cell right; the headline number),
token accuracy, q-halt accuracy (does ``q_halt ≥ 0`` predict "solved"?), mean steps and the losses.
``max_steps`` above the trained value is inference-time scaling (HRM paper Fig. 5c).

With ``save_outputs`` the chosen tensors of the last ACT step are kept for every test row (in file
order) and returned as NumPy arrays; ARC scoring (voting over augmentations, pass@k) runs on those.
Under ``torch.distributed`` each rank evaluates its slice and the sums are reduced to every rank. Padding
rows (a batch's rows past its real ones) carry ignored labels and are never scored.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from reasonlens.hrm.training.losses import ACTLossHead
from reasonlens.utils.errors import UserInputError

DEFAULT_SAVE_OUTPUTS = ("inputs", "labels", "puzzle_identifiers", "preds", "q_halt_logits")


class EvaluationError(UserInputError):
    """An evaluation cannot run as asked (a batch size or step count that is not positive)."""


def check_evaluation_args(batch_size: int, max_steps: int | None = None) -> None:
    """Fail with one line on a batch size below 1 or ACT steps below 1 (``None``: the trained value)."""
    if not _positive_int(batch_size):
        raise EvaluationError(f"batch size must be a whole number >= 1 (rows per batch), got {batch_size!r}")
    if max_steps is not None and not _positive_int(max_steps):
        raise EvaluationError(f"max steps must be a whole number >= 1 (ACT steps per puzzle), got {max_steps!r}")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@contextlib.contextmanager
def halting_at(model, max_steps: int | None):
    """Temporarily run ``max_steps`` ACT steps (inference-time scaling)."""
    if max_steps is None:
        yield
        return
    trained = model.config.halt_max_steps
    model.config.halt_max_steps = max_steps
    try:
        yield
    finally:
        model.config.halt_max_steps = trained


def evaluate_model(
    model,
    batches: Iterable[tuple[dict[str, torch.Tensor], int]],  # (batch, real rows), e.g. PuzzleBatches.test_batches()
    *,
    device: torch.device | str = "cpu",
    loss_type: str = "stablemax_cross_entropy",
    max_steps: int | None = None,
    save_outputs: Sequence[str] = (),
    head=None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Return (metrics averaged over scored rows, saved outputs). ``head`` may be a (compiled) loss head
    wrapping ``model``; by default one is built."""
    head = head if head is not None else ACTLossHead(model, loss_type)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    saved: dict[str, list[np.ndarray]] = {k: [] for k in save_outputs}
    with torch.inference_mode(), halting_at(model, max_steps):
        for batch, real_rows in batches:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            carry = head.initial_carry(batch)
            while True:
                carry, _, metrics, outputs, all_halted = head(carry, batch, return_keys=save_outputs)
                if all_halted:
                    break
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0) + value.detach().to(torch.float64)
            for key in save_outputs:
                source = batch if key in batch else outputs
                if key not in source:
                    raise KeyError(f"cannot save {key!r}: allowed are batch keys {sorted(batch)} and model outputs")
                saved[key].append(source[key][:real_rows].cpu().numpy())  # drop the padding rows
    model.train(was_training)

    if not sums:
        raise ValueError("evaluation got no batches: is the test split empty?")
    keys = sorted(sums)
    values = torch.stack([sums[k].reshape(()) for k in keys])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    totals = dict(zip(keys, values.tolist()))
    count = max(totals.pop("count"), 1.0)
    result = {k: v / count for k, v in totals.items()}
    result["count"] = count
    return result, {k: np.concatenate(v) for k, v in saved.items()}
