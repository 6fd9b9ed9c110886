"""The learning curve of a 9×9 Sudoku run from the checkpoints it kept (``keep_checkpoints: true`` writes
``checkpoints/step_N``): per checkpoint, exact accuracy on the run's test split by number of givens, and
on the shipped banks by difficulty bucket (:mod:`.sudoku_banks`), each with a 95% Wilson interval.

The time axis is ``step × mean seconds per step`` of the whole run (``summary.json``'s ``train_seconds``;
the trainer does not time single steps), so it is a mean over the run, not a stopwatch per checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.data.format import DatasetError, load_split
from reasonlens.hrm.data.sudoku import decode_board
from reasonlens.hrm.evaluation.rollout import check_evaluation_args
from reasonlens.hrm.evaluation.sudoku_banks import evaluate_on_banks, solved_mask
from reasonlens.hrm.training.checkpoint import load_checkpoint
from reasonlens.utils.config import ConfigError
from reasonlens.utils.stats import wilson_interval

# givens of the test puzzles, grouped (inclusive ranges): the frontier of what a run solves moves down them
GIVENS_BINS = ((17, 30), (31, 45), (46, 60), (61, 80))
CHECKPOINT_DIR = re.compile(r"step_(\d+)")


def kept_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``checkpoints/step_N`` of a run, by step."""
    folder = Path(run) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT_DIR.fullmatch(p.name))]
    return sorted(f for f in found if (f[1] / "model.safetensors").is_file())


def held_out_boards(dataset: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(puzzles, solutions) of a 9×9 Sudoku dataset's test split as boards (N, 9, 9), 0 = blank."""
    meta, arrays = load_split(dataset, "test")
    if meta.seq_len != 81:
        raise DatasetError(f"{dataset} is not a 9×9 Sudoku dataset (seq_len {meta.seq_len}, expected 81)")
    puzzles = np.stack([decode_board(row, 9) for row in arrays.inputs])
    solutions = np.stack([decode_board(row, 9) for row in arrays.labels])
    return puzzles, solutions


def accuracy_by_givens(solved: np.ndarray, givens: np.ndarray, bins=GIVENS_BINS) -> dict[str, dict]:
    """Exact accuracy with its 95% interval per range of givens (ranges with no puzzle are left out)."""
    rows = {}
    for low, high in bins:
        inside = (givens >= low) & (givens <= high)
        count, hits = int(inside.sum()), int(solved[inside].sum())
        if count:
            rows[f"{low}-{high}"] = {
                "puzzles": count,
                "exact_accuracy": hits / count,
                "interval_95": list(wilson_interval(hits, count)),
            }
    return rows


def seconds_per_step(run: str | Path) -> float | None:
    """The run's mean training seconds per step (None without a summary)."""
    summary = Path(run) / "summary.json"
    if not summary.is_file():
        return None
    values = json.loads(summary.read_text())
    return values["train_seconds"] / values["steps"] if values.get("steps") else None


def learning_curve(
    run: str | Path,
    dataset: str | Path,
    every: int = 1,
    banks=(),
    per_bank: int = 100,
    max_steps: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate every ``every``-th kept checkpoint of ``run`` (and always the last) on ``dataset``'s test
    split by givens and, when ``banks`` are named, on those banks by bucket."""
    check_evaluation_args(batch_size, max_steps)
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    checkpoints = kept_checkpoints(run)
    if not checkpoints:
        raise DatasetError(
            f"{run} has no kept checkpoints (checkpoints/step_N); train with keep_checkpoints=true to get a curve"
        )
    chosen = checkpoints[::every]
    if chosen[-1] != checkpoints[-1]:
        chosen.append(checkpoints[-1])
    puzzles, solutions = held_out_boards(dataset)
    givens = (puzzles > 0).reshape(len(puzzles), -1).sum(1)  # (N,)
    per_step = seconds_per_step(run)
    points = []
    for step, folder in chosen:
        model = load_checkpoint(folder, device=device, seq_len=81)
        solved = solved_mask(model, puzzles, solutions, max_steps, batch_size, device)
        point = {
            "step": step,
            "train_seconds": round(step * per_step, 1) if per_step else None,
            "test_exact_accuracy": float(solved.mean()),
            "test_by_givens": accuracy_by_givens(solved, givens),
        }
        if banks:
            result = evaluate_on_banks(model, banks, per_bank, max_steps, batch_size, device)
            point["banks"] = {name: row["exact_accuracy"] for name, row in result["banks"].items()}
            point["buckets"] = result["buckets"]
        points.append(point)
    return {
        "run": str(run),
        "data": str(dataset),
        "act_steps": max_steps or model.config.halt_max_steps,
        "seconds_per_step": per_step,
        "per_bank_limit": per_bank if banks else None,
        "points": points,
    }


def plot_learning_curve(curve: dict, path: str | Path) -> Path:
    """Exact accuracy per givens range (and per bank bucket, dashed) against training time or steps."""
    from reasonlens.interp.report import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.2, 3.8))
    points = curve["points"]
    timed = all(p["train_seconds"] is not None for p in points)
    x = [p["train_seconds"] / 60 if timed else p["step"] for p in points]
    for name in points[-1]["test_by_givens"]:
        axes.plot(
            x,
            [p["test_by_givens"].get(name, {}).get("exact_accuracy") for p in points],
            marker="o",
            label=f"test, {name} givens",
        )
    for name, row in points[-1].get("buckets", {}).items():
        if row["puzzles"]:
            axes.plot(
                x,
                [p["buckets"][name]["exact_accuracy"] for p in points],
                linestyle="--",
                marker=".",
                label=f"banks, {name}",
            )
    axes.set_xlabel("training minutes (mean step time)" if timed else "training step")
    axes.set_ylabel(f"exact accuracy ({curve['act_steps']} ACT steps)")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=7)
    return save_figure(figure, path)
