"""Stablemax / softmax cross-entropy and the ACT loss head's losses and metrics
(sapientinc/HRM ``models/losses.py``)."""

import math

import pytest
import torch
import torch.nn.functional as F

from reasonlens.hrm import IGNORE_LABEL_ID, ACTLossHead, Carry, InnerCarry, softmax_cross_entropy
from reasonlens.hrm import stablemax_cross_entropy as stablemax_ce


def test_stablemax_cross_entropy_by_hand():
    logits = torch.tensor([[[2.0, -1.0, 0.0], [-3.0, 0.5, -0.5]]])
    labels = torch.tensor([[0, IGNORE_LABEL_ID]])
    s = [2.0 + 1, 1 / (1 + 1.0), 0.0 + 1]  # s(x) = x + 1 for x >= 0, 1 / (1 - x) below
    loss = stablemax_ce(logits, labels)
    assert loss.dtype == torch.float64
    assert loss[0, 0].item() == pytest.approx(-math.log(s[0] / sum(s)), rel=1e-12)
    assert loss[0, 1].item() == 0.0  # ignored position


def test_softmax_cross_entropy_matches_torch():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    labels[0, 0] = IGNORE_LABEL_ID
    expected = F.cross_entropy(logits.view(-1, 7), labels.view(-1), ignore_index=IGNORE_LABEL_ID, reduction="none")
    torch.testing.assert_close(softmax_cross_entropy(logits, labels), expected.view(2, 5))


class StubModel(torch.nn.Module):
    """Returns fixed logits / Q / halting so the loss head's bookkeeping can be checked exactly."""

    def __init__(self, logits, q_halt, halted, steps, target=None):
        super().__init__()
        self.values = (logits, q_halt, halted, steps, target)

    def forward(self, carry, batch):
        logits, q_halt, halted, steps, target = self.values
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": torch.zeros_like(q_halt)}
        if target is not None:
            outputs["target_q_continue"] = target
        return Carry(InnerCarry(torch.zeros(1)), steps, halted, dict(batch)), outputs


def test_act_loss_head_losses_and_metrics():
    # 3 rows, 4 positions, vocab 3. Row 0: all correct. Row 1: 2 of 3 scored positions correct.
    # Row 2: correct but not halted (excluded from metrics, included in the loss).
    labels = torch.tensor([[1, 2, 0, 1], [2, 2, 1, IGNORE_LABEL_ID], [0, 0, 0, 0]])
    predictions = torch.tensor([[1, 2, 0, 1], [2, 0, 1, 1], [0, 0, 0, 0]])
    logits = F.one_hot(predictions, 3).float() * 4.0
    q_halt = torch.tensor([3.0, 1.0, -2.0])
    halted = torch.tensor([True, True, False])
    steps = torch.tensor([2, 5, 1], dtype=torch.int32)
    target = torch.tensor([0.2, 0.7, 0.9])
    head = ACTLossHead(StubModel(logits, q_halt, halted, steps, target))
    _, loss, metrics, outputs, all_halted = head(None, {"labels": labels}, return_keys=["logits", "preds"])

    per_token = stablemax_ce(logits, labels)
    lm_loss = (per_token[0].sum() / 4 + per_token[1].sum() / 3 + per_token[2].sum() / 4).item()
    exact = torch.tensor([1.0, 0.0, 1.0])
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, exact, reduction="sum").item()
    q_cont_loss = F.binary_cross_entropy_with_logits(torch.zeros(3), target, reduction="sum").item()
    assert loss.item() == pytest.approx(lm_loss + 0.5 * (q_halt_loss + q_cont_loss), rel=1e-6)
    assert metrics["count"].item() == 2
    assert metrics["accuracy"].item() == pytest.approx(1.0 + 2 / 3)
    assert metrics["exact_accuracy"].item() == 1
    assert metrics["q_halt_accuracy"].item() == 1  # row 0: q>=0 and solved; row 1: q>=0 but not solved
    assert metrics["steps"].item() == 7
    assert metrics["q_continue_loss"].item() == pytest.approx(q_cont_loss, rel=1e-6)
    assert torch.equal(outputs["preds"], predictions) and not bool(all_halted)


def test_rows_without_labels_count_as_solved_but_are_not_scored():
    labels = torch.full((1, 3), IGNORE_LABEL_ID)
    head = ACTLossHead(
        StubModel(torch.zeros(1, 3, 2), torch.zeros(1), torch.tensor([True]), torch.tensor([1], dtype=torch.int32))
    )
    _, loss, metrics, _, _ = head(None, {"labels": labels})
    assert metrics["count"].item() == 0 and "q_continue_loss" not in metrics
    assert metrics["lm_loss"].item() == 0.0
    assert metrics["q_halt_loss"].item() == pytest.approx(math.log(2))  # target 1 ("solved"), logit 0


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="allowed: stablemax_cross_entropy, softmax_cross_entropy"):
        ACTLossHead(torch.nn.Identity(), "focal")
