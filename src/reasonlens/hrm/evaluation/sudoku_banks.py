"""A 9×9 Sudoku model on the real puzzle banks (``data/sudoku``): exact accuracy per bank and per difficulty
bucket, with 95% intervals, and a check that no evaluated puzzle is a symmetric copy of a training puzzle.

Per bank, up to ``per_bank`` puzzles are drawn with a fixed seed (all of a smaller bank), rated by the
solver (backtracks → ``easy`` / ``moderate`` / ``hard``, :mod:`reasonlens.hrm.data.sudoku_solver`), encoded as
the datasets are (token = value + 1, identifier 0) and run for ``max_steps`` ACT steps in eval mode. A puzzle
counts as solved when every cell of the prediction equals the bank's solution (the datasets' exact accuracy:
givens included). Intervals are Wilson score intervals.

With the training dataset, every evaluated puzzle's :func:`~reasonlens.hrm.data.sudoku.symmetry_key` is
compared with the training puzzles' (originals; their augmented copies share the keys): ``train_overlap``
counts the puzzles that may be symmetric copies of a training puzzle (0 proves none is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.data.format import load_split
from reasonlens.hrm.data.sudoku import BANK_LEVELS, decode_board, encode_board, load_bank, symmetry_key
from reasonlens.hrm.data.sudoku_solver import DIFFICULTIES, difficulty_bucket, rate
from reasonlens.hrm.evaluation.rollout import check_evaluation_args, evaluate_model
from reasonlens.utils.config import ConfigError
from reasonlens.utils.stats import wilson_interval

# every bank but forum-hardest-1905: the same kind of puzzle as forum-hardest-1106 (47 shared), 20,000 of them
DEFAULT_BANKS = tuple(bank for bank in BANK_LEVELS if bank != "tdoku_forum_hardest_1905_11plus")


def bank_names(banks: str) -> list[str]:
    """``all`` or comma-separated bank names → the bank names (``ConfigError`` naming the allowed ones)."""
    names = list(DEFAULT_BANKS) if banks == "all" else [b.strip() for b in banks.split(",") if b.strip()]
    unknown = [b for b in names if b not in BANK_LEVELS]
    if unknown or not names:
        raise ConfigError(f"--banks {unknown or banks!r} unknown; allowed: all, or any of {', '.join(BANK_LEVELS)}")
    return names


def training_keys(dataset: str | Path) -> set[tuple]:
    """Symmetry keys of a Sudoku dataset's training puzzles (one per group: the original)."""
    _, arrays = load_split(dataset, "train")
    first_puzzles = arrays.group_indices[:-1]  # a group is [original, augmentations...]
    first_examples = arrays.puzzle_indices[first_puzzles]
    return {symmetry_key(decode_board(arrays.inputs[i], 9)) for i in first_examples.tolist()}


def solved_mask(model, puzzles: np.ndarray, solutions: np.ndarray, max_steps, batch_size, device) -> np.ndarray:
    """Per puzzle: does the prediction after ``max_steps`` ACT steps equal the solution everywhere?"""
    inputs = np.stack([encode_board(p) for p in puzzles]).astype(np.int32)  # (N, 81)
    labels = np.stack([encode_board(s) for s in solutions]).astype(np.int64)  # (N, 81)

    def batches():
        for start in range(0, len(inputs), batch_size):
            rows = slice(start, start + batch_size)
            batch = {
                "inputs": torch.from_numpy(inputs[rows]),
                "labels": torch.from_numpy(labels[rows]),
                "puzzle_identifiers": torch.zeros(len(inputs[rows]), dtype=torch.int32),
            }
            yield batch, len(inputs[rows])

    _, outputs = evaluate_model(model, batches(), device=device, max_steps=max_steps, save_outputs=["preds"])
    return np.all(outputs["preds"] == labels, axis=1)


def evaluate_on_banks(
    model,
    banks=DEFAULT_BANKS,
    per_bank: int = 500,
    max_steps: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    train_dataset: str | Path | None = None,
) -> dict:
    """Exact accuracy per bank and per difficulty bucket (module docstring)."""
    check_evaluation_args(batch_size, max_steps)
    keys = training_keys(train_dataset) if train_dataset is not None else None
    rng = np.random.default_rng(seed)
    per_bank_rows, overlap = {}, 0
    bucket_solved, bucket_count = dict.fromkeys(DIFFICULTIES, 0), dict.fromkeys(DIFFICULTIES, 0)
    for bank in banks:
        puzzles, solutions = load_bank(bank)
        if len(puzzles) > per_bank:
            chosen = np.sort(rng.choice(len(puzzles), per_bank, replace=False))
            puzzles, solutions = puzzles[chosen], solutions[chosen]
        buckets = [difficulty_bucket(rate(p)) for p in puzzles]
        solved = solved_mask(model, puzzles, solutions, max_steps, batch_size, device)
        if keys is not None:
            overlap += sum(symmetry_key(p) in keys for p in puzzles)
        low, high = wilson_interval(int(solved.sum()), len(solved))
        per_bank_rows[bank] = {
            "puzzles": len(solved),
            "exact_accuracy": float(solved.mean()),
            "interval_95": [low, high],
            "buckets": {name: buckets.count(name) for name in DIFFICULTIES},
        }
        for name, hit in zip(buckets, solved.tolist()):
            bucket_count[name] += 1
            bucket_solved[name] += int(hit)
    by_bucket = {}
    for name in DIFFICULTIES:
        count = bucket_count[name]
        by_bucket[name] = {
            "puzzles": count,
            "exact_accuracy": bucket_solved[name] / count if count else None,
            "interval_95": list(wilson_interval(bucket_solved[name], count)) if count else None,
        }
    return {
        "act_steps": max_steps or model.config.halt_max_steps,
        "trained_act_steps": model.config.halt_max_steps,
        "per_bank_limit": per_bank,
        "seed": seed,
        "banks": per_bank_rows,
        "buckets": by_bucket,
        "train_overlap": overlap if keys is not None else None,
    }
