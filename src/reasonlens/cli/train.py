"""``reasonlens train`` and ``reasonlens evaluate``: parse arguments, build the config, call the library."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import friendly_errors


def train(
    config: Annotated[Path, typer.Argument(help="training config YAML (configs/*.yaml), or a run directory to resume")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. lr=3e-4 model.H_cycles=4")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in run_dir from its last checkpoint")] = False,
) -> None:
    """Train an HRM-family model (torchrun-aware: launch with torchrun for several processes)."""
    from reasonlens.hrm.train import load_train_config
    from reasonlens.hrm.train import train as run_training

    with friendly_errors():
        train_config = load_train_config(config, overrides or [], **({"resume": True} if resume else {}))
        summary = run_training(train_config, log=typer.echo)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        typer.echo(json.dumps(summary, indent=2))


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="run directory / model.safetensors, or an official checkpoint")],
    data: Annotated[Path | None, typer.Option(help="dataset folder (default: the one the run was trained on)")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="segments per puzzle; above the trained value = inference-time scaling")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="rows per batch")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="write the results JSON here (default: <run>/evaluation.json)")
    ] = None,
    save_predictions: Annotated[
        bool, typer.Option(help="also save inputs, labels, predictions, q_halt as .npz")
    ] = False,
) -> None:
    """Evaluate a checkpoint on the test split: exact accuracy (headline), token accuracy, q-halt accuracy,
    mean steps; ARC datasets also get voting pass@k under both scoring rules."""
    from reasonlens.hrm.evaluation_run import run_evaluation

    with friendly_errors():
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
    typer.echo(f"{result['data']}: {int(metrics['count'])} puzzles, {result['segments']} segments")
    for key in ("exact_accuracy", "accuracy", "q_halt_accuracy", "steps"):
        typer.echo(f"  {key:<16} {metrics[key]:.4f}")
    if "arc" in result:
        from reasonlens.hrm.arc_eval import SCORING_RULES

        for rule in SCORING_RULES:
            typer.echo(f"  ARC {rule}: " + ", ".join(f"{k} {v:.4f}" for k, v in result["arc"][rule].items()))
    typer.echo(f"wrote {result['out']}")
