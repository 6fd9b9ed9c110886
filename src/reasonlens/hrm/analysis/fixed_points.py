"""Where a recurrent reasoner's trajectory ends: fixed points, cycles, wandering, and guessing.

Ren & Liu (arXiv 2601.10679) found that HRM reaches *wrong* fixed points, can fail a puzzle with a single blank
cell, and reaches different fixed points from different starts ("guessing"); a 2026 draft on TRM/HRM found
that failed trajectories do not settle at all. This module measures each on any HRM-family checkpoint.

**Settling.** A checkpoint is run for many more ACT steps (segments) than it was trained with, through the
one eval rollout (:func:`reasonlens.hrm.analysis.dynamics.rollout`) with a :class:`SettlingRecorder`
watching the latent state z_t = (z_H, z_L) after every segment t (cell positions only, flattened per
puzzle; z_0 is the initial state). Per puzzle it keeps the residual curve r_t = ‖z_t − z_{t−1}‖ / ‖z_{t−1}‖
and, over the last ``window`` segments, the lag distances d_p(t) = ‖z_t − z_{t−p}‖ / ‖z_{t−p}‖ for
p = 1..``max_period``. With D_p the largest d_p(t) over the window, a puzzle is

- **settled** when D_1 ≤ ``tolerance`` — then *settled-correct* or *settled-wrong* (a false fixed point) by
  its final answer;
- **cycling** with period p when it is not settled and p ≥ 2 is the smallest lag with D_p ≤ ``tolerance``;
- **wandering** otherwise.

**Guessing.** The same puzzles from ``starts`` initial states: the clean one and ``starts − 1`` perturbed by
noise on every state the first segment produces (engine patches,
:func:`~reasonlens.hrm.analysis.dynamics.state_noise_patches`). Per puzzle: the number of distinct final
answers, whether any / all / the majority are right, and how that relates to the clean answer's correctness.

**One blank.** Solved puzzles (the labels of Sudoku test puzzles) with exactly one cell blanked: a puzzle
any solver finishes in one step.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence

import numpy as np
import torch

from reasonlens.hrm.analysis.dynamics import Trajectories, rollout, state_noise_patches
from reasonlens.hrm.data.format import IGNORE_LABEL_ID
from reasonlens.hrm.evaluation.scoring import score_predictions
from reasonlens.hrm.models.hrm_act_v1 import InnerCarry
from reasonlens.interp import InterpError
from reasonlens.utils.stats import wilson_interval

CLASSES = ("settled-correct", "settled-wrong", "cycling", "wandering")
SUDOKU_BLANK = 1  # the token of a blank Sudoku cell (value 0 + 1)
TOLERANCE_SWEEP = (1e-2, 1e-3, 1e-4, 1e-5)  # the classes again at each, since "settled" depends on it


def state_vector(state: InnerCarry, prefix_len: int) -> torch.Tensor:
    """(N, D) the latent state of each puzzle's cells: z_H then z_L, flattened, in fp32."""
    parts = [z[:, prefix_len:] for z in (state.z_H, state.z_L) if z is not None]
    return torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).float()


def _relative(later: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    return (later - earlier).norm(dim=1) / earlier.norm(dim=1).clamp_min(1e-12)  # (N,)


class SettlingRecorder:
    """An observer of :func:`~reasonlens.hrm.analysis.dynamics.rollout` that keeps the residual curves and the
    final window's lag distances of ``puzzles`` puzzles over ``steps`` segments (module docstring)."""

    def __init__(self, puzzles: int, steps: int, prefix_len: int, window: int = 4, max_period: int = 8):
        if window < 1 or max_period < 2:
            raise InterpError(f"window must be >= 1 and max period >= 2, got {window} and {max_period}")
        if steps < window + max_period - 1:
            raise InterpError(
                f"{steps} ACT steps are too few to look for periods up to {max_period} over a window of {window}: "
                f"run at least {window + max_period - 1}"
            )
        self.steps, self.prefix_len, self.window, self.max_period = steps, prefix_len, window, max_period
        self.residuals = torch.zeros(steps, puzzles)  # r_t after segment t (from 1)
        self.lags = torch.full((window, puzzles, max_period), float("inf"))  # d_p(t) over the final window
        self._recent: deque[torch.Tensor] = deque(maxlen=max_period + 1)  # z_{t-max_period} .. z_t of this batch

    def __call__(self, step: int, rows: slice, batch: dict, before: InnerCarry, after: InnerCarry) -> None:
        if step == 0:
            self._recent.clear()
            self._recent.append(state_vector(before, self.prefix_len).cpu())
        state = state_vector(after, self.prefix_len).cpu()
        self.residuals[step, rows] = _relative(state, self._recent[-1])
        self._recent.append(state)
        place = step - (self.steps - self.window)  # index in the final window, negative before it
        if place >= 0:
            for lag in range(1, min(self.max_period, len(self._recent) - 1) + 1):
                self.lags[place, rows, lag - 1] = _relative(state, self._recent[-1 - lag])


def classify(lags: torch.Tensor, correct: torch.Tensor, tolerance: float) -> tuple[list[str], torch.Tensor]:
    """``lags`` (window, N, max_period) and ``correct`` (N,) → (class of each puzzle, period (N,): 1 when
    settled, p ≥ 2 when cycling, 0 when wandering)."""
    worst = lags.amax(0)  # (N, max_period): D_p
    within = worst <= tolerance
    periods = torch.where(within.any(1), within.float().argmax(1) + 1, 0)  # the smallest lag within tolerance
    classes = []
    for period, right in zip(periods.tolist(), correct.tolist(), strict=True):
        if period == 1:
            classes.append("settled-correct" if right else "settled-wrong")
        else:
            classes.append("cycling" if period else "wandering")
    return classes, periods


def difficulty_bands(inputs: torch.Tensor, labels: torch.Tensor, bands: int = 3) -> list[str]:
    """A difficulty band per puzzle by the number of cells it must fill (scored cells whose label differs from
    the input), cut at equal-count quantiles and named by the range of its members ('fill 41–50')."""
    to_fill = ((labels != IGNORE_LABEL_ID) & (labels != inputs)).sum(1).numpy()  # (N,)
    cuts = np.quantile(to_fill, np.linspace(0, 1, bands + 1)[1:-1])  # the inner cut points
    band = np.searchsorted(cuts, to_fill, side="right")  # (N,) 0 .. bands-1
    names = {b: f"fill {to_fill[band == b].min()}–{to_fill[band == b].max()}" for b in np.unique(band)}
    return [names[b] for b in band]


def class_table(classes: Sequence[str], correct: torch.Tensor) -> list[dict]:
    """Count, share and exact accuracy of each class."""
    rows = []
    for name in CLASSES:
        member = torch.tensor([c == name for c in classes], dtype=torch.bool)
        count = int(member.sum())
        rows.append(
            {
                "class": name,
                "count": count,
                "share": count / max(len(classes), 1),
                "exact": float(correct[member].float().mean()) if count else None,
            }
        )
    return rows


def settling(
    model,
    batches: Sequence[dict],
    steps: int,
    window: int = 4,
    max_period: int = 8,
    tolerance: float = 1e-3,
) -> tuple[dict, Trajectories]:
    """Run ``steps`` segments and classify every puzzle (module docstring): the report, and the rollout itself
    (its first segments are the clean start that :func:`guessing` can reuse)."""
    puzzles = sum(b["inputs"].shape[0] for b in batches)
    recorder = SettlingRecorder(puzzles, steps, model.inner.puzzle_emb_len, window, max_period)
    trajectories = rollout(model, batches, steps, observe=recorder)
    exact = score_predictions(trajectories.logits.argmax(-1), trajectories.labels).exact  # (steps, N)
    final = exact[-1]
    classes, periods = classify(recorder.lags, final, tolerance)
    failures = int((~final).sum())
    failure_classes = Counter(c for c, right in zip(classes, final.tolist(), strict=True) if not right)
    bands = difficulty_bands(trajectories.inputs, trajectories.labels)
    by_band = []
    for band in sorted(set(bands), key=lambda name: int(name.split()[1].split("–")[0])):
        member = [i for i, b in enumerate(bands) if b == band]
        table = class_table([classes[i] for i in member], final[member])
        by_band.append(
            {"band": band, "puzzles": len(member), "exact": float(final[member].float().mean()), "classes": table}
        )
    residuals = recorder.residuals
    report = {
        "puzzles": puzzles,
        "steps": steps,
        "trained_steps": model.config.halt_max_steps,
        "window": window,
        "max_period": max_period,
        "tolerance": tolerance,
        "exact": float(final.float().mean()),
        "exact_at_trained_steps": float(exact[min(model.config.halt_max_steps, steps) - 1].float().mean()),
        "classes": class_table(classes, final),
        "failures": failures,
        "failure_shares": {name: failure_classes.get(name, 0) / failures if failures else None for name in CLASSES[1:]},
        "periods": dict(sorted(Counter(p for p in periods.tolist() if p >= 2).items())),
        "tolerance_sweep": [
            {"tolerance": tol, "classes": class_table(classify(recorder.lags, final, tol)[0], final)}
            for tol in TOLERANCE_SWEEP
        ],
        "by_band": by_band,
        "residual_quantiles": {
            outcome: _quantiles(residuals[:, mask]) if mask.any() else None
            for outcome, mask in (("solved", final), ("failed", ~final))
        },
        "per_puzzle": [
            {"class": c, "period": p, "exact": right, "residuals": [float(f"{v:.4g}") for v in curve]}
            for c, p, right, curve in zip(classes, periods.tolist(), final.tolist(), residuals.T.tolist(), strict=True)
        ],
    }
    return report, trajectories


def _quantiles(residuals: torch.Tensor) -> dict:
    """Per segment the 25th, 50th and 75th percentile of the residual over puzzles (``residuals`` (steps, N))."""
    q = torch.quantile(residuals.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)  # (3, steps)
    return {"q25": q[0].tolist(), "median": q[1].tolist(), "q75": q[2].tolist()}


# ----------------------------------------------------------------------------------------------- guessing


def answers_at(trajectories: Trajectories, steps: int) -> tuple[torch.Tensor, ...]:
    """(answers (N, cells), exact (N,), labels (N, cells)) of a rollout after its first ``steps`` segments."""
    answers = trajectories.logits[steps - 1].argmax(-1)
    return answers, score_predictions(answers, trajectories.labels).exact, trajectories.labels


def guessing(
    model,
    batches: Sequence[dict],
    steps: int,
    starts: int = 8,
    std: float = 1.0,
    seed: int = 0,
    clean: Trajectories | None = None,
) -> dict:
    """Final answers from ``starts`` initial states (the clean one first; module docstring). ``clean``: a clean
    rollout of the same puzzles over at least ``steps`` segments (the settling run), reused for the clean start."""
    if starts < 2:
        raise InterpError(f"--starts must be at least 2 (the clean start and perturbed ones), got {starts}")
    if std <= 0:
        raise InterpError(f"--std must be > 0 (the noise that perturbs a start), got {std}")
    if clean is None or clean.logits.shape[0] < steps:
        clean = rollout(model, batches, steps)
    runs = [answers_at(clean, steps)]
    for start in range(1, starts):
        patches = state_noise_patches(model, std, seed + start, first_step_only=True)
        runs.append(answers_at(rollout(model, batches, steps, patches), steps))
    labels = runs[0][2]
    scored = labels != IGNORE_LABEL_ID  # (N, cells)
    answers = torch.stack([torch.where(scored, a, IGNORE_LABEL_ID) for a, _, _ in runs], dim=1)  # (N, starts, cells)
    exact = torch.stack([e for _, e, _ in runs], dim=1)  # (N, starts)
    distinct = torch.tensor([len({tuple(row) for row in puzzle.tolist()}) for puzzle in answers])  # (N,)
    majority = torch.tensor([_majority_is_right(puzzle, right) for puzzle, right in zip(answers, exact, strict=True)])
    clean = exact[:, 0]
    one, several = distinct == 1, distinct > 1

    def rate(values: torch.Tensor, member: torch.Tensor):
        return float(values[member].float().mean()) if member.any() else None

    return {
        "puzzles": len(distinct),
        "starts": starts,
        "std": std,
        "steps": steps,
        "clean_exact": float(clean.float().mean()),
        "any_start_exact": float(exact.any(1).float().mean()),
        "all_starts_exact": float(exact.all(1).float().mean()),
        "majority_exact": float(majority.float().mean()),
        "mean_start_exact": float(exact.float().mean()),
        "distinct_answers": {str(k): int(v) for k, v in sorted(Counter(distinct.tolist()).items())},
        "mean_distinct_answers": float(distinct.float().mean()),
        "clean_exact_when_one_answer": rate(clean, one),
        "clean_exact_when_several": rate(clean, several),
        "share_with_several_answers": float(several.float().mean()),
    }


def _majority_is_right(answers: torch.Tensor, right: torch.Tensor) -> bool:
    """Is the most frequent answer (ties: the earliest start) a right one? ``answers`` (starts, cells)."""
    keys = [tuple(row) for row in answers.tolist()]
    counts = Counter(keys)
    best = max(range(len(keys)), key=lambda i: (counts[keys[i]], -i))
    return bool(right[best])


# ---------------------------------------------------------------------------------------------- one blank


def one_blank_batches(batches: Sequence[dict], seed: int = 0, blank: int = SUDOKU_BLANK) -> list[dict]:
    """The solutions (labels) of the puzzles in ``batches`` with one random scored cell per puzzle set to
    ``blank``: puzzles a solver finishes in one step. Labels are unchanged."""
    rng = np.random.default_rng(seed)
    out = []
    for batch in batches:
        labels = batch["labels"]
        scored = (labels != IGNORE_LABEL_ID).cpu().numpy()
        if not scored.any(1).all():
            raise InterpError("a puzzle has no scored cell to blank")
        inputs = labels.clone()
        for row in range(labels.shape[0]):
            cell = rng.choice(np.flatnonzero(scored[row]))
            inputs[row, cell] = blank
        out.append({**batch, "inputs": inputs.to(batch["inputs"].dtype)})
    return out


def one_blank(model, batches: Sequence[dict], steps: int, seed: int = 0, **settle) -> dict:
    """Exact accuracy and settling classes on one-blank versions of the puzzles (module docstring)."""
    report, _ = settling(model, one_blank_batches(batches, seed), steps, **settle)
    solved = sum(row["count"] for row in report["classes"] if row["class"] == "settled-correct")
    hits = round(report["exact"] * report["puzzles"])
    return {
        "puzzles": report["puzzles"],
        "steps": steps,
        "exact": report["exact"],
        "interval_95": list(wilson_interval(hits, report["puzzles"])),
        "exact_at_trained_steps": report["exact_at_trained_steps"],
        "settled_correct": solved,
        "classes": report["classes"],
        "failure_shares": report["failure_shares"],
    }
