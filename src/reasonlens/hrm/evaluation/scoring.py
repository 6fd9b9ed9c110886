"""How a prediction of the HRM family is scored: the one definition of token and exact accuracy.

A cell counts when its label is not ``IGNORE_LABEL_ID``; a puzzle is solved (``exact``) when every counted
cell is right. The loss head's training metrics, the evaluation, the engine adapter and the per-step
dynamics all score through :func:`score_predictions`."""

from __future__ import annotations

from typing import NamedTuple

import torch

from reasonlens.hrm.data.format import IGNORE_LABEL_ID


class Scores(NamedTuple):
    correct: torch.Tensor  # (..., cells) bool: counted and right
    counted: torch.Tensor  # (...,) int: cells with a label
    accuracy: torch.Tensor  # (...,) float: right / counted (0 where nothing is counted)
    exact: torch.Tensor  # (...,) bool: every counted cell right


def score_predictions(predictions: torch.Tensor, labels: torch.Tensor) -> Scores:
    """Score predicted tokens ``(..., cells)`` against ``labels`` of the same shape."""
    scored = labels != IGNORE_LABEL_ID
    correct = scored & (predictions == labels)
    counted = scored.sum(-1)
    # per-cell shares summed, as the official loss head does (bit-equal metrics)
    accuracy = (correct.to(torch.float32) / counted.clamp_min(1).unsqueeze(-1)).sum(-1)
    return Scores(correct, counted, accuracy, correct.sum(-1) == counted)
