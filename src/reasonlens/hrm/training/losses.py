"""The ACT loss head of the HRM family (sapientinc/HRM ``models/losses.py::ACTLossHead``).

Per call (one ACT step on every slot):

- ``lm_loss``  = Σ over rows of the row's mean token loss (stablemax CE in float64 by default, or
  softmax CE in fp32), over *every* slot, halted or not: this is deep supervision;
- ``q_halt_loss`` = Σ BCE(q_halt, row solved exactly);
- ``q_continue_loss`` = Σ BCE(q_continue, target_q_continue), only when the model produced a target;
- ``loss = lm_loss + 0.5 · (q_halt_loss + q_continue_loss)`` — the caller scales it by 1/global_batch;
  a model with ``state_l1`` > 0 (ours, not official) adds its per-row state penalty (``state_l1_loss``).

Metrics are sums over the rows that halted this ACT step and have at least one label (``count``,
``accuracy`` (per-row token accuracy), ``exact_accuracy``, ``q_halt_accuracy``, ``steps``, plus the
detached losses); divide by ``count`` (losses by the global batch) to report them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reasonlens.hrm.data.format import IGNORE_LABEL_ID
from reasonlens.hrm.evaluation.scoring import score_predictions

LossType = Literal["stablemax_cross_entropy", "softmax_cross_entropy"]


def _stablemax_s(x: torch.Tensor, epsilon: float = 1e-30) -> torch.Tensor:
    """s(x) = 1/(1 − x) for x < 0, x + 1 otherwise: positive, monotone, linear growth (no exp)."""
    return torch.where(x < 0, 1 / (1 - x + epsilon), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s_x = _stablemax_s(x)
    return torch.log(s_x / torch.sum(s_x, dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID):
    """Per-token −log stablemax(logits)[label], 0 at ignored positions; float64 (float32 on MPS)."""
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    logprobs = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0).to(torch.long)
    picked = torch.gather(logprobs, index=safe_labels.unsqueeze(-1), dim=-1).squeeze(-1)
    return -torch.where(valid, picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID):
    """Per-token softmax cross-entropy in fp32, 0 at ignored positions."""
    flat = F.cross_entropy(
        logits.to(torch.float32).view(-1, logits.shape[-1]),
        labels.to(torch.long).view(-1),
        ignore_index=ignore_index,
        reduction="none",
    )
    return flat.view(labels.shape)


LOSS_FUNCTIONS = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


class ACTLossHead(nn.Module):
    """Wraps an ACT model: ``carry, loss, metrics, outputs, all_halted = head(carry, batch)``.

    ``batch`` must hold ``labels`` (IGNORE_LABEL_ID where a position is not scored). ``return_keys``
    selects detached model outputs to return; ``"preds"`` (argmax of the logits) is also available.
    """

    def __init__(self, model: nn.Module, loss_type: LossType = "stablemax_cross_entropy"):
        super().__init__()
        if loss_type not in LOSS_FUNCTIONS:
            raise ValueError(f"unknown loss_type {loss_type!r}; allowed: {', '.join(LOSS_FUNCTIONS)}")
        self.model = model
        self.loss_type = loss_type
        self.loss_fn = LOSS_FUNCTIONS[loss_type]

    def initial_carry(self, batch):
        return self.model.initial_carry(batch)

    def forward(self, carry, batch: dict[str, torch.Tensor], return_keys: Sequence[str] = ()):
        new_carry, outputs = self.model(carry, batch)
        labels = new_carry.current_data["labels"]
        logits = outputs["logits"]

        with torch.no_grad():
            preds = torch.argmax(logits, dim=-1)
            scores = score_predictions(preds, labels)
            loss_counts, seq_is_correct = scores.counted, scores.exact
            loss_divisor = loss_counts.clamp_min(1).unsqueeze(-1)  # rows without labels: avoid 0/0

            valid = new_carry.halted & (loss_counts > 0)
            metrics = {
                "count": valid.sum(),
                "accuracy": torch.where(valid, scores.accuracy, 0).sum(),
                "exact_accuracy": (valid & seq_is_correct).sum(),
                "q_halt_accuracy": (valid & ((outputs["q_halt_logits"] >= 0) == seq_is_correct)).sum(),
                "steps": torch.where(valid, new_carry.steps, 0).sum(),
            }

        lm_loss = (self.loss_fn(logits, labels, ignore_index=IGNORE_LABEL_ID) / loss_divisor).sum()
        q_halt_loss = F.binary_cross_entropy_with_logits(
            outputs["q_halt_logits"], seq_is_correct.to(outputs["q_halt_logits"].dtype), reduction="sum"
        )
        metrics["lm_loss"] = lm_loss.detach()
        metrics["q_halt_loss"] = q_halt_loss.detach()

        q_continue_loss = 0
        if "target_q_continue" in outputs:
            q_continue_loss = F.binary_cross_entropy_with_logits(
                outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum"
            )
            metrics["q_continue_loss"] = q_continue_loss.detach()

        state_loss = 0
        if "state_l1" in outputs:  # the sparsity study's L1 penalty on the states (HRM config state_l1)
            state_loss = outputs["state_l1"].sum()
            metrics["state_l1_loss"] = state_loss.detach()

        detached = {k: outputs[k].detach() for k in return_keys if k in outputs}
        if "preds" in return_keys:
            detached["preds"] = preds
        loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss) + state_loss
        return new_carry, loss, metrics, detached, new_carry.halted.all()
