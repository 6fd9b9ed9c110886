"""Accuracy of any checkpoint on the ID test set and on every OOD set, as one standard JSON.

Greedy decoding of the answer, parsed with :func:`~reasonlens.lm.tasks.formatting.parse_answer`. Per split:
``accuracy`` (label right), ``format_rate`` (the answer parses), ``total_accuracy`` when answers carry the
total, accuracy per rule family and per true answer (``by_label``), how often each answer is given
(``answer_rate``: a policy that drifts to one answer can keep its accuracy on a balanced set), ``n``, and for
the worked format ``steps_accuracy`` (every intermediate step right, not only the answer).
The JSON::

    {"checkpoint": ..., "splits": {"test": {"accuracy": 0.93, "n": 300, ...}, "ood_paraphrase": {...}}}
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from reasonlens.lm.errors import LMError
from reasonlens.lm.models.lm_loader import load_checkpoint
from reasonlens.lm.models.policy_wrappers import Policy
from reasonlens.lm.tasks.formatting import LABELS, is_worked, parse_answer, worked_steps_right
from reasonlens.utils.io import write_json


def score_completion(completion: str, example: dict) -> dict:
    """Right label, parsed at all, right total, and (worked answers only, else None) every step right."""
    total, label = parse_answer(completion)
    return {
        "correct": label == example["label"],
        "parsed": label is not None,
        "total_correct": total is not None and total == example["total"],
        "steps_correct": worked_steps_right(completion, example) if is_worked(example["prompt"]) else None,
    }


def evaluate_split(policy: Policy, split, max_examples: int | None = None, batch_size: int = 64) -> dict:
    rows = split.select(range(min(len(split), max_examples))) if max_examples else split
    prompts, examples = rows["prompt"], list(rows)
    completions = []
    for start in range(0, len(prompts), batch_size):
        completions += policy.generate(prompts[start : start + batch_size])
    scores = [score_completion(c, e) for c, e in zip(completions, examples)]
    by_family, by_label = defaultdict(list), defaultdict(list)
    for score, example in zip(scores, examples):
        by_family[example["family"]].append(score["correct"])
        by_label[example["label"]].append(score["correct"])
    answers = [parse_answer(c)[1] for c in completions]
    n = max(1, len(scores))
    return {
        "n": len(scores),
        "accuracy": sum(s["correct"] for s in scores) / n,
        "format_rate": sum(s["parsed"] for s in scores) / n,
        "total_accuracy": sum(s["total_correct"] for s in scores) / n,
        "steps_accuracy": (
            sum(s["steps_correct"] for s in scores) / n if scores and scores[0]["steps_correct"] is not None else None
        ),
        "by_family": {f: sum(v) / len(v) for f, v in sorted(by_family.items())},
        "by_label": {label: sum(v) / len(v) for label, v in sorted(by_label.items())},
        "answer_rate": {label: answers.count(label) / n for label in LABELS},
        "examples": [{"prompt": e["prompt"], "completion": c} for e, c in zip(examples[:3], completions[:3])],
    }


def evaluation_splits(datasets) -> list[str]:
    """``test`` and every ``ood_*`` split present."""
    return [name for name in datasets if name == "test" or name.startswith("ood_")]


def evaluate_checkpoint(
    checkpoint: str | Path,
    datasets,
    splits: list[str] | None = None,
    max_examples: int | None = 300,
    out: str | Path | None = None,
    device: str = "cpu",
    max_length: int | None = None,
) -> dict:
    """Evaluate ``checkpoint`` on ``splits`` (default: test + all OOD); write the JSON to ``out`` if given."""
    model, tokenizer = load_checkpoint(checkpoint, device)
    splits = list(splits or evaluation_splits(datasets))
    unknown = [s for s in splits if s not in datasets]
    if unknown:
        raise LMError(f"unknown split(s) {', '.join(unknown)}; the datasets have: {', '.join(datasets)}")
    policy = Policy(model, tokenizer, max_length or model.config.n_positions)
    with torch.no_grad():
        result = {
            "checkpoint": str(checkpoint),
            "splits": {name: evaluate_split(policy, datasets[name], max_examples) for name in splits},
        }
    if out is not None:
        write_json(out, result)
    return result


def kept_steps(run: str | Path) -> list[tuple[int, Path]]:
    """(step, checkpoint) of every model an SFT run kept (``keep_steps``), in step order."""
    folder = Path(run) / "steps"
    kept = sorted((int(path.name.removeprefix("step_")), path) for path in folder.glob("step_*") if path.is_dir())
    if not kept:
        raise LMError(f"{run} kept no checkpoints along the way (no steps/step_N/); train it with keep_steps")
    return kept


def evaluate_steps(
    run: str | Path,
    datasets,
    splits: list[str] | None = None,
    max_examples: int | None = 300,
    out: str | Path | None = None,
    device: str = "cpu",
) -> dict:
    """Accuracy of every checkpoint an SFT run kept on ``splits`` (default: test + all OOD): the
    accuracy-vs-SFT-steps curve, ``{"run", "points": [{"step", "splits": {split: {accuracy, ...}}}]}``."""
    points = []
    for step, checkpoint in kept_steps(run):
        result = evaluate_checkpoint(checkpoint, datasets, splits, max_examples, device=device)
        points.append({"step": step, "splits": {name: _summary(split) for name, split in result["splits"].items()}})
    curve = {"run": str(run), "points": points}
    if out is not None:
        write_json(out, curve)
    return curve


def _summary(split: dict) -> dict:
    return {key: split[key] for key in ("accuracy", "steps_accuracy", "format_rate", "n")}


def accuracy_table(results: dict[str, dict]) -> list[dict]:
    """Rows {split, <name>: accuracy, ...} comparing several evaluation JSONs side by side."""
    splits = list(dict.fromkeys(s for r in results.values() for s in r["splits"]))
    return [
        {"split": s, **{name: r["splits"].get(s, {}).get("accuracy") for name, r in results.items()}} for s in splits
    ]
