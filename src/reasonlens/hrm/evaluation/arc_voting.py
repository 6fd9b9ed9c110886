"""ARC evaluation: undo each test row's augmentation, vote across augmentations, score pass@K.

Follows sapientinc/HRM ``arc_eval.ipynb`` and TinyRecursiveModels ``evaluators/arc.py``, in pure numpy, on a
dataset built by :mod:`reasonlens.hrm.data.arc` or :mod:`reasonlens.hrm.data.arc_synthetic`. This module
owns :func:`evaluate_arc_predictions` and :func:`write_submission`.

For every test-split row (padding rows, puzzle id 0, are dropped): crop the input and the argmax
prediction with the official crop (:func:`reasonlens.hrm.data.arc.crop_sizes`), undo the row's
augmentation from its puzzle name (inverse dihedral, then the inverse colour map ``argsort(mapping)``),
and file the prediction under (original task, test input). Each distinct prediction of a test input gets
``[count, mean sigmoid(q_halt)]``; candidates rank by count, then mean q, both descending, and remaining
ties keep the order of first appearance (Python's stable sort, as the official code). pass@K: the true
output is among the top K. Ground truth is the dataset's ``test_puzzles.json`` (TRM), else the
non-augmented puzzles of its test split (HRM notebook).

Two scoring rules, both reported (the two sources disagree):

* ``task_all_or_nothing`` (HRM notebook): a task counts 1 only if every one of its test inputs is
  solved; score = solved tasks / tasks.
* ``per_test_input`` (TRM evaluator): a task counts the fraction of its test inputs solved; the score
  is the mean over tasks.

The headline number is pass@2 ("two attempts", as ARC-AGI and both papers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from reasonlens.hrm.data.arc import (
    COLOUR_OFFSET,
    crop_sizes,
    crop_tokens,
    parse_augmentation_name,
    task_from_json,
    unaugment_grid,
)
from reasonlens.hrm.data.format import DatasetError, load_identifiers, load_split
from reasonlens.utils.io import atomic_write

PREDICTION_KEYS = ("inputs", "preds", "puzzle_identifiers", "q_halt_logits")
DEFAULT_KS = (1, 2, 5, 10, 100, 1000)
SCORING_RULES = ("task_all_or_nothing", "per_test_input")
HEADLINE_K = 2
CROP_CHUNK_ROWS = 65536

GridKey = tuple[int, int, bytes]


def _grid_key(grid: np.ndarray) -> GridKey:
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    return (*grid.shape, grid.tobytes())


def _crop_all(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = [crop_sizes(tokens[start : start + CROP_CHUNK_ROWS]) for start in range(0, len(tokens), CROP_CHUNK_ROWS)]
    if not sizes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([h for h, _ in sizes]), np.concatenate([w for _, w in sizes])


def load_ground_truth(dataset_dir: str | os.PathLike) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{task id: [(test input grid, test output grid), ...]} from ``test_puzzles.json``, or from the
    non-augmented puzzles of the test split when that file is absent."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "test_puzzles.json"
    truth: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    if path.is_file():
        try:
            puzzles = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(puzzles, dict):
            raise DatasetError(f"{path}: expected an object {{task id: task}}")
        for task_id, puzzle in puzzles.items():
            task = task_from_json(puzzle, task_id, "evaluation", where=f"{path}: task {task_id}")
            truth[task_id] = task.test_pairs
        return truth
    identifiers = load_identifiers(dataset_dir)
    _, arrays = load_split(dataset_dir, "test")
    for puzzle, identifier in enumerate(arrays.puzzle_identifiers):
        name = identifiers[identifier]
        if parse_augmentation_name(name)[0] != name:
            continue
        rows = slice(arrays.puzzle_indices[puzzle], arrays.puzzle_indices[puzzle + 1])
        inputs, labels = np.asarray(arrays.inputs[rows]), np.asarray(arrays.labels[rows])
        pairs = truth.setdefault(name, [])
        for inp, lab in zip(inputs, labels):
            pairs.append((crop_tokens(inp), crop_tokens(lab)))
    return truth


def _check_predictions(predictions: dict, seq_len: int, num_identifiers: int) -> dict[str, np.ndarray]:
    missing = [key for key in PREDICTION_KEYS if key not in predictions]
    if missing:
        raise ValueError(f"predictions lack {missing}; required keys: {list(PREDICTION_KEYS)}")
    arrays = {key: np.asarray(predictions[key]) for key in PREDICTION_KEYS}
    num_rows = len(arrays["puzzle_identifiers"])
    arrays["puzzle_identifiers"] = arrays["puzzle_identifiers"].reshape(-1).astype(np.int64)
    arrays["q_halt_logits"] = arrays["q_halt_logits"].reshape(-1).astype(np.float64)
    for key in ("inputs", "preds"):
        if arrays[key].shape != (num_rows, seq_len):
            raise ValueError(f"predictions['{key}'] has shape {arrays[key].shape}, expected ({num_rows}, {seq_len})")
    if arrays["q_halt_logits"].shape != (num_rows,) or arrays["puzzle_identifiers"].shape != (num_rows,):
        raise ValueError(f"puzzle_identifiers and q_halt_logits need one value per row ({num_rows} rows)")
    ids = arrays["puzzle_identifiers"]
    if num_rows and (ids.min() < 0 or ids.max() >= num_identifiers):
        raise ValueError(f"puzzle identifiers must lie in [0, {num_identifiers}) (identifiers.json)")
    return arrays


def evaluate_arc_predictions(
    dataset_dir: str | os.PathLike,
    predictions: dict[str, np.ndarray],
    ks: tuple[int, ...] | list[int] = DEFAULT_KS,
    num_candidates: int = 10,
) -> dict:
    """Vote and score predictions on a built ARC dataset's test split.

    ``predictions``: numpy arrays over evaluated rows, ``inputs`` and ``preds`` (argmax tokens) of shape
    (N, seq_len), ``puzzle_identifiers`` (N,) and ``q_halt_logits`` (N,). Returns a JSON-serialisable
    dict: ``task_all_or_nothing`` and ``per_test_input`` ({"pass@K": score}), ``headline`` (pass@2 under
    both rules, when 2 is among ``ks``), counts, and ``tasks`` with per test input the label's rank and the
    top ``num_candidates`` candidates (grid, count, mean_q, correct).
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
    metadata, _ = load_split(dataset_dir, "test")
    identifiers = load_identifiers(dataset_dir)
    truth = load_ground_truth(dataset_dir)
    arrays = _check_predictions(predictions, metadata.seq_len, len(identifiers))
    side = int(np.sqrt(metadata.seq_len))

    keep = arrays["puzzle_identifiers"] != metadata.blank_identifier_id
    inputs, preds = arrays["inputs"][keep], arrays["preds"][keep]
    ids = arrays["puzzle_identifiers"][keep]
    q_halt = 1.0 / (1.0 + np.exp(-arrays["q_halt_logits"][keep]))
    input_h, input_w = _crop_all(inputs)
    pred_h, pred_w = _crop_all(preds)

    test_inputs = {task: {_grid_key(inp) for inp, _ in pairs} for task, pairs in truth.items()}
    augmentation_of = {}
    # votes[task][input key][prediction key] = [count, sum of q, grid]
    votes: dict[str, dict[GridKey, dict[GridKey, list]]] = {task: {} for task in truth}
    unmatched = 0
    for row, identifier in enumerate(ids):
        if identifier not in augmentation_of:
            augmentation_of[identifier] = parse_augmentation_name(identifiers[identifier])
        task, tid, mapping = augmentation_of[identifier]
        if task not in votes:
            unmatched += 1
            continue
        grid = inputs[row].reshape(side, side)[: input_h[row], : input_w[row]] - COLOUR_OFFSET
        input_key = _grid_key(unaugment_grid(grid, tid, mapping))
        if input_key not in test_inputs[task]:
            unmatched += 1
            continue
        pred = unaugment_grid(
            preds[row].reshape(side, side)[: pred_h[row], : pred_w[row]] - COLOUR_OFFSET, tid, mapping
        )
        tally = votes[task].setdefault(input_key, {}).setdefault(_grid_key(pred), [0, 0.0, pred])
        tally[0] += 1
        tally[1] += float(q_halt[row])

    tasks = {}
    per_task = {rule: [] for rule in SCORING_RULES}  # (num_tasks, len(ks)) rows
    for task, pairs in truth.items():
        details = []
        solved = np.zeros((len(pairs), len(ks)), dtype=bool)
        for index, (inp, out) in enumerate(pairs):
            tallies = votes[task].get(_grid_key(inp), {})
            ranked = sorted(tallies.items(), key=lambda item: (item[1][0], item[1][1] / item[1][0]), reverse=True)
            label_key = _grid_key(out)
            rank = next((r for r, (key, _) in enumerate(ranked) if key == label_key), None)
            solved[index] = [rank is not None and rank < k for k in ks]
            details.append(
                {
                    "num_votes": int(sum(t[0] for t in tallies.values())),
                    "num_distinct_predictions": len(ranked),
                    "label_rank": rank,
                    "candidates": [
                        {"grid": t[2].tolist(), "count": t[0], "mean_q": t[1] / t[0], "correct": key == label_key}
                        for key, t in ranked[:num_candidates]
                    ],
                }
            )
        all_solved, fraction = solved.all(axis=0), solved.mean(axis=0)
        per_task["task_all_or_nothing"].append(all_solved)
        per_task["per_test_input"].append(fraction)
        tasks[task] = {
            "test_inputs": details,
            "all_solved": {f"pass@{k}": bool(all_solved[i]) for i, k in enumerate(ks)},
            "fraction_solved": {f"pass@{k}": float(fraction[i]) for i, k in enumerate(ks)},
        }

    scores = {
        rule: {
            f"pass@{k}": float(np.mean(np.asarray(rows, dtype=np.float64)[:, i])) if rows else 0.0
            for i, k in enumerate(ks)
        }
        for rule, rows in per_task.items()
    }
    result = {
        "ks": ks,
        "num_tasks": len(truth),
        "num_test_inputs": sum(len(pairs) for pairs in truth.values()),
        "num_rows": int(keep.sum()),
        "num_padding_rows": int((~keep).sum()),
        "num_unmatched_rows": unmatched,
        "num_candidates_kept": num_candidates,
        **scores,
        "tasks": tasks,
    }
    if HEADLINE_K in ks:
        result["headline"] = {"metric": f"pass@{HEADLINE_K}"} | {
            rule: scores[rule][f"pass@{HEADLINE_K}"] for rule in SCORING_RULES
        }
    return result


def submission_from_evaluation(evaluation: dict, num_attempts: int = 2) -> dict[str, list[dict]]:
    """Kaggle-style ``{task: [{"attempt_1": grid, "attempt_2": grid}, ...]}``, one entry per test input,
    attempts = the top-ranked candidates, padded by repeating the first (TRM). A test input without any
    prediction gets ``[[0]]`` attempts so that the list stays aligned with the task's test inputs (TRM
    skips it, shifting later entries)."""
    if not 1 <= num_attempts <= evaluation["num_candidates_kept"]:
        raise ValueError(
            f"num_attempts must lie in [1, {evaluation['num_candidates_kept']}] (candidates kept by the evaluation)"
        )
    submission = {}
    for task, details in evaluation["tasks"].items():
        entries = []
        for test_input in details["test_inputs"]:
            grids = [candidate["grid"] for candidate in test_input["candidates"][:num_attempts]] or [[[0]]]
            grids += [grids[0]] * (num_attempts - len(grids))
            entries.append({f"attempt_{i + 1}": grid for i, grid in enumerate(grids)})
        submission[task] = entries
    return submission


def write_submission(path: str | os.PathLike, evaluation: dict, num_attempts: int = 2) -> Path:
    """Write :func:`submission_from_evaluation` as JSON, atomically (temporary file renamed into place)."""
    path = Path(path)
    text = json.dumps(submission_from_evaluation(evaluation, num_attempts))
    with atomic_write(path) as handle:
        handle.write(text)
    return path
