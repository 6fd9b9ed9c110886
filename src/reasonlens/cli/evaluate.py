"""``reasonlens evaluate``: evaluate a checkpoint (ours or official) on a dataset's test split and write the
results (JSON; ARC datasets also a submission file and voting pass@k); with ``--banks`` on the shipped 9×9
Sudoku banks; with ``--rollouts K`` by K perturbed rollouts per puzzle (:mod:`reasonlens.hrm.evaluation.perturbed`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.pictures import dataset_kind
from reasonlens.hrm.data.format import DatasetError
from reasonlens.hrm.data.sampler import PuzzleBatches
from reasonlens.hrm.evaluation.arc_voting import SCORING_RULES, evaluate_arc_predictions, write_submission
from reasonlens.hrm.evaluation.perturbed import SELECTIONS, check_rollout_args, perturbed_answers, rollout_counts
from reasonlens.hrm.evaluation.rollout import (
    DEFAULT_SAVE_OUTPUTS,
    EvaluationError,
    check_evaluation_args,
    evaluate_model,
)
from reasonlens.hrm.evaluation.sudoku_banks import bank_names, evaluate_on_banks
from reasonlens.hrm.training.checkpoint import load_checkpoint
from reasonlens.hrm.training.run_dataset import dataset_of_run
from reasonlens.utils.config import ConfigError
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import atomic_write, write_json


def run_evaluation(
    checkpoint, data=None, max_steps=None, batch_size=256, device="auto", out=None, save_predictions=False
) -> dict:
    """Evaluate ``checkpoint`` on the test split of ``data`` (default: the run's dataset) in batches of at most
    ``batch_size`` rows (fewer when the split is smaller: a batch is never padded past the split)."""
    check_evaluation_args(batch_size, max_steps)
    checkpoint = Path(checkpoint)
    data = dataset_of_run(checkpoint, data)
    device = resolve_device(device)
    batches = PuzzleBatches(data, "test", batch_size)
    meta = batches.metadata
    model = load_checkpoint(checkpoint, device=device, seq_len=meta.seq_len, data_path=data)
    for field in ("seq_len", "vocab_size"):
        if getattr(model.config, field) != getattr(meta, field):
            raise DatasetError(
                f"{data} has {field}={getattr(meta, field)} but the model was built for "
                f"{field}={getattr(model.config, field)}: evaluate on the dataset it was trained on"
            )
    if meta.num_puzzle_identifiers > model.config.num_puzzle_identifiers:
        raise DatasetError(
            f"{data} uses {meta.num_puzzle_identifiers} puzzle ids; the model knows "
            f"{model.config.num_puzzle_identifiers}"
        )
    is_arc = (Path(data) / "test_puzzles.json").is_file()
    save = list(DEFAULT_SAVE_OUTPUTS) if (is_arc or save_predictions) else []
    metrics, outputs = evaluate_model(
        model, batches.test_batches(), device=device, max_steps=max_steps, save_outputs=save
    )
    broken = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if broken:  # NaN logits score as "halt, wrong" and would print a perfect q-halt accuracy
        raise EvaluationError(
            f"{checkpoint}: the model's outputs are not finite ({', '.join(broken)} is NaN or inf): "
            "its weights hold NaN or inf, or overflow in this dtype; nothing was written"
        )
    out = Path(out) if out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation.json"
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "act_steps": max_steps or model.config.halt_max_steps,
        "trained_act_steps": model.config.halt_max_steps,
        "metrics": metrics,
        "out": str(out),
    }
    if is_arc:
        result["arc"] = evaluate_arc_predictions(data, outputs)
        result["submission"] = str(write_submission(out.with_suffix(".submission.json"), result["arc"]))
    if save_predictions:
        with atomic_write(out.with_suffix(".predictions.npz"), "wb") as handle:
            np.savez_compressed(handle, **outputs)
        result["predictions"] = str(out.with_suffix(".predictions.npz"))
    write_json(out, result)
    return result


def run_bank_evaluation(
    checkpoint, banks, per_bank=500, max_steps=None, batch_size=64, device="auto", out=None, train_data=None
) -> dict:
    """Evaluate a 9×9 Sudoku checkpoint on the shipped banks (:mod:`reasonlens.hrm.evaluation.sudoku_banks`);
    the overlap check uses ``train_data`` or the run's dataset when it is found (skipped otherwise)."""
    check_evaluation_args(batch_size, max_steps)
    names = bank_names(banks)
    if per_bank < 1:
        raise ConfigError(f"--per-bank must be at least 1, got {per_bank}")
    checkpoint = Path(checkpoint)
    device = resolve_device(device)
    model = load_checkpoint(checkpoint, device=device, seq_len=81)
    if (model.config.vocab_size, model.config.seq_len) != (11, 81):
        raise DatasetError(
            f"{checkpoint} is not a 9×9 Sudoku model (vocab_size 11, seq_len 81): it has vocab_size "
            f"{model.config.vocab_size}, seq_len {model.config.seq_len}"
        )
    if train_data is None:
        try:
            train_data = dataset_of_run(checkpoint)
        except (DatasetError, ValueError, OSError):
            train_data = None
    result = evaluate_on_banks(model, names, per_bank, max_steps, batch_size, device, train_dataset=train_data)
    out = Path(out) if out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation_banks.json"
    result = {"checkpoint": str(checkpoint), "train_data": str(train_data) if train_data else None, **result}
    result["out"] = str(out)
    write_json(out, result)
    return result


def run_rollout_evaluation(
    checkpoint,
    data=None,
    rollouts=8,
    select="vote",
    noise=0.0,
    symmetries=True,
    max_steps=None,
    batch_size=64,
    device="auto",
    out=None,
) -> dict:
    """Evaluate ``checkpoint`` on the whole test split by ``rollouts`` perturbed rollouts per puzzle, the answer
    chosen by ``select``; the curve over K = 1, 2, 4, … comes from the same run (K = 1 is the plain evaluation)."""
    check_evaluation_args(batch_size, max_steps)
    check_rollout_args(rollouts, select, noise, symmetries)
    checkpoint = Path(checkpoint)
    adapter = HRMAdapter.from_checkpoint(checkpoint, data, "test", max_steps, device)
    batches = adapter.batches(range(adapter.num_examples), batch_size)
    task = dataset_kind(adapter.dataset_dir)
    answers = perturbed_answers(adapter.model, batches, rollouts, adapter.max_steps, task, symmetries, noise)
    curve = answers.curve(rollout_counts(rollouts))
    out = Path(out) if out else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "evaluation_rollouts.json"
    result = {
        "checkpoint": str(checkpoint),
        "data": str(adapter.dataset_dir),
        "puzzles": int(answers.labels.shape[0]),
        "act_steps": adapter.max_steps,
        "rollouts": rollouts,
        "select": select,
        "symmetries": symmetries,
        "noise": noise,
        "exact_accuracy": curve[-1][select],
        "plain_exact_accuracy": curve[0][select],
        "curve": curve,
        "out": str(out),
    }
    write_json(out, result)
    return result


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="run directory / model.safetensors, or an official checkpoint")],
    data: Annotated[
        Path | None,
        typer.Option(help="dataset folder (default: the run's); with --banks, the training set to check overlap with"),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="ACT steps per puzzle; above the trained value = inference-time scaling")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="rows per batch (at most; >= 1)")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="write the results JSON here (default: <run>/evaluation.json)")
    ] = None,
    save_predictions: Annotated[
        bool, typer.Option(help="also save inputs, labels, predictions, q_halt as .npz")
    ] = False,
    banks: Annotated[
        str | None,
        typer.Option(help="9×9 Sudoku: evaluate on the shipped banks instead (all, or names: se_hard,...)"),
    ] = None,
    per_bank: Annotated[int, typer.Option(help="with --banks: puzzles drawn per bank (seeded)")] = 500,
    rollouts: Annotated[
        int, typer.Option(help="K perturbed rollouts per puzzle (task symmetries / noise), one answer chosen")
    ] = 1,
    select: Annotated[str, typer.Option(help=f"with --rollouts: how to choose ({' | '.join(SELECTIONS)})")] = "vote",
    noise: Annotated[float, typer.Option(help="with --rollouts: state-noise std for rollouts 2..K")] = 0.0,
    symmetries: Annotated[bool, typer.Option(help="with --rollouts: transform each rollout by a task symmetry")] = True,
) -> None:
    """Evaluate a checkpoint on the test split: exact accuracy (headline), token accuracy, q-halt accuracy,
    mean steps; ARC datasets also get voting pass@k under both scoring rules. With ``--banks``: a 9×9 Sudoku
    model on the real banks, per bank and per difficulty bucket with 95% intervals."""
    if banks is not None:
        with user_errors():
            if rollouts != 1:
                raise ConfigError("--rollouts evaluates the test split; it cannot be combined with --banks")
            result = run_bank_evaluation(checkpoint, banks, per_bank, max_steps, min(batch_size, 64), device, out, data)
        typer.echo(f"{result['checkpoint']}: {result['act_steps']} ACT steps (trained {result['trained_act_steps']})")
        for name, row in {**result["banks"], **result["buckets"]}.items():
            if row["puzzles"]:
                low, high = row["interval_95"]
                typer.echo(
                    f"  {name:<26} {row['puzzles']:>5}  exact {row['exact_accuracy']:.4f}  [{low:.3f}, {high:.3f}]"
                )
        overlap = result["train_overlap"]
        typer.echo("  training overlap: " + ("not checked (no dataset)" if overlap is None else f"{overlap} puzzles"))
        typer.echo(f"wrote {result['out']}")
        return
    if rollouts != 1:
        with user_errors():
            result = run_rollout_evaluation(
                checkpoint, data, rollouts, select, noise, symmetries, max_steps, min(batch_size, 64), device, out
            )
        typer.echo(f"{result['data']}: {result['puzzles']} puzzles, {result['act_steps']} ACT steps per rollout")
        for row in result["curve"]:
            typer.echo(
                f"  K={row['rollouts']:>3}: vote {row['vote']:.4f}  q {row['q']:.4f}  oracle {row['oracle']:.4f}"
            )
        typer.echo(f"  exact_accuracy   {result['exact_accuracy']:.4f} ({rollouts} rollouts, chosen by {select})")
        typer.echo(f"wrote {result['out']}")
        return
    with user_errors():
        result = run_evaluation(
            checkpoint,
            data=data,
            max_steps=max_steps,
            batch_size=batch_size,
            device=device,
            out=out,
            save_predictions=save_predictions,
        )
    metrics = result["metrics"]
    typer.echo(f"{result['data']}: {int(metrics['count'])} puzzles, {result['act_steps']} ACT steps")
    for key in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps"):
        typer.echo(f"  {key:<16} {metrics[key]:.4f}")
    if "arc" in result:
        for rule in SCORING_RULES:
            typer.echo(f"  ARC {rule}: " + ", ".join(f"{k} {v:.4f}" for k, v in result["arc"][rule].items()))
    typer.echo(f"wrote {result['out']}")
