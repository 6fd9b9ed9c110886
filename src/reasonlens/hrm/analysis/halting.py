"""Halting at evaluation (Ge, Liao & Poggio, arXiv 2510.00355): the official evaluation runs every puzzle for
``halt_max_steps`` ACT steps (Mmax), although the model was trained to stop where its Q head says so; they
found that letting the Q head halt at evaluation changes Sudoku-Extreme accuracy substantially.

From one eval rollout of Mmax ACT steps (:func:`reasonlens.hrm.analysis.dynamics.rollout`) this module puts
side by side:

- **fixed Mmax**: exact accuracy of the answer after Mmax ACT steps (what ``reasonlens evaluate`` reports);
- **Q-halting**: each puzzle answered at the first ACT step where the model's halting rule fires (HRM
  ``q_halt > q_continue``; TRM without the continue head ``q_halt > 0``), else at Mmax: exact accuracy, mean
  ACT steps and the distribution of halting steps; the paired difference with a bootstrap interval;
- **the Q head as a classifier** of "the answer after this ACT step is already exactly right", over every
  (ACT step, puzzle) pair: precision, recall and F1 of its halt decision, and a calibration curve of
  sigmoid(q_halt) — the quantity its loss fits to exactly that 0/1 target — against the observed rate.
"""

from __future__ import annotations

import torch

from reasonlens.hrm.analysis.dynamics import Trajectories, halting_steps
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.utils.stats import paired_bootstrap, wilson_interval


def classifier_scores(predicted: torch.Tensor, actual: torch.Tensor) -> dict:
    """Precision, recall and F1 of the boolean ``predicted`` against ``actual`` (same shape), with counts.
    Precision is None when nothing is predicted, recall None when nothing is actual."""
    predicted, actual = predicted.bool().reshape(-1), actual.bool().reshape(-1)
    true_pos = int((predicted & actual).sum())
    n_pred, n_actual = int(predicted.sum()), int(actual.sum())
    precision = true_pos / n_pred if n_pred else None
    recall = true_pos / n_actual if n_actual else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {
        "pairs": int(predicted.numel()),
        "predicted_halt": n_pred,
        "already_right": n_actual,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "agreement": float((predicted == actual).float().mean()),
    }


def calibration_curve(confidence: torch.Tensor, actual: torch.Tensor, bins: int = 10) -> list[dict]:
    """Equal-width bins of ``confidence`` in [0, 1]: per non-empty bin the mean confidence, the observed rate
    of ``actual`` with a 95% Wilson interval, and the count."""
    confidence, actual = confidence.reshape(-1).double(), actual.reshape(-1).bool()
    which = (confidence * bins).long().clamp(0, bins - 1)  # bin of each pair
    rows = []
    for b in range(bins):
        member = which == b
        count = int(member.sum())
        if not count:
            continue
        hits = int(actual[member].sum())
        rows.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "mean_confidence": float(confidence[member].mean()),
                "observed": hits / count,
                "interval_95": list(wilson_interval(hits, count)),
                "count": count,
            }
        )
    return rows


def halting_report(trajectories: Trajectories, bins: int = 10) -> dict:
    """Fixed Mmax vs Q-halting and the Q head as a classifier (module docstring), Mmax = the rollout's steps."""
    steps, n = trajectories.steps, trajectories.labels.shape[0]
    exact = score_predictions(trajectories.logits.argmax(-1), trajectories.labels).exact  # (steps, N) bool
    wants_halt = trajectories.wants_halt()  # (steps, N)
    halt_step = halting_steps(wants_halt, steps)  # (N,) from 0
    at_halt = exact[halt_step, torch.arange(n)]  # (N,)
    at_max = exact[-1]
    histogram = torch.bincount(halt_step, minlength=steps)
    never = int((~wants_halt.any(0)).sum())
    difference = float(at_halt.float().mean() - at_max.float().mean())
    confidence = torch.sigmoid(trajectories.q_halt)  # (steps, N)
    return {
        "puzzles": n,
        "max_steps": steps,
        "fixed": {
            "exact": float(at_max.float().mean()),
            "interval_95": list(wilson_interval(int(at_max.sum()), n)),
            "mean_steps": float(steps),
        },
        "q_halting": {
            "exact": float(at_halt.float().mean()),
            "interval_95": list(wilson_interval(int(at_halt.sum()), n)),
            "mean_steps": float((halt_step + 1).float().mean()),
            "halting_steps": {str(s + 1): int(c) for s, c in enumerate(histogram.tolist())},
            "never_fired": never,
        },
        "difference": difference,
        "difference_95": list(paired_bootstrap(at_halt.numpy(), at_max.numpy())),
        "solved_at_some_step": float(exact.any(0).float().mean()),
        "lost_after_solving": int((exact.any(0) & ~at_max).sum()),  # right at some step, wrong at Mmax
        "per_step": [
            {
                "act_step": s + 1,
                "exact": float(exact[s].float().mean()),
                "halting_here": int(histogram[s]),
                "rule_fires": float(wants_halt[s].float().mean()),
            }
            for s in range(steps)
        ],
        "classifier": classifier_scores(wants_halt, exact),
        "calibration": calibration_curve(confidence, exact, bins),
        "brier": float(((confidence - exact.double()) ** 2).mean()),
    }


def halting_lines(report: dict) -> list[str]:
    """The report in a few lines for the terminal."""
    fixed, q = report["fixed"], report["q_halting"]
    low, high = report["difference_95"]
    c = report["classifier"]

    def percent(value) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    return [
        f"  fixed Mmax ({report['max_steps']} ACT steps): exact {percent(fixed['exact'])}",
        f"  Q-halting: exact {percent(q['exact'])} in {q['mean_steps']:.2f} ACT steps on average "
        f"(the rule never fired for {q['never_fired']} of {report['puzzles']})",
        f"  Q-halting − fixed: {100 * report['difference']:+.1f} points (95% {100 * low:+.1f} to {100 * high:+.1f})",
        f"  Q head as a classifier of 'already right': precision {percent(c['precision'])}, "
        f"recall {percent(c['recall'])}, F1 {c['f1']:.3f}; Brier {report['brier']:.3f}",
    ]
