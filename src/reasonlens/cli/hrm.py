"""``reasonlens hrm ...``: inspect model configs, convert checkpoints between our and the official format,
publish a run as a model folder, and draw a 9×9 Sudoku run's learning curve from its kept checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.evaluation.sudoku_banks import bank_names
from reasonlens.hrm.evaluation.sudoku_curve import learning_curve, plot_learning_curve
from reasonlens.hrm.training.checkpoint import build_model, export_official_checkpoint, load_checkpoint, save_checkpoint
from reasonlens.hrm.training.publish import publish_run, push_folder
from reasonlens.hrm.training.run_dataset import dataset_of_run
from reasonlens.utils.config import ConfigError
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import FolderError, read_yaml, write_json

app = typer.Typer(help="HRM family: model configs and checkpoints.", no_args_is_help=True)

ARCH_HELP = "model class: hrm_act_v1 | trm | transformer_act"


@app.command()
def params(
    config: Annotated[Path, typer.Argument(help="flat model config YAML (e.g. configs/hrm_v1_sudoku.yaml)")],
    arch: Annotated[str, typer.Option(help=ARCH_HELP)] = "hrm_act_v1",
) -> None:
    """Build the model of a config and print its parameter count per module."""
    with user_errors():
        model = build_model(arch, read_yaml(config))
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():  # dense parameters only (what the paper counts)
        group = name.split(".")[1]
        counts[group] = counts.get(group, 0) + param.numel()
    for group, count in counts.items():
        typer.echo(f"  {group:<14} {count:>12,}")
    typer.echo(f"  {'total':<14} {sum(counts.values()):>12,}")
    if model.config.puzzle_emb_ndim:
        rows, dim = model.puzzle_emb.weights.shape
        typer.echo(f"  + puzzle embedding table {rows:,} x {dim} (sparse buffer, trained by SignSGD, not counted)")


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="checkpoint: our run dir / model.safetensors, or an official folder")],
    dst: Annotated[Path, typer.Argument(help="output folder")],
    to: Annotated[str, typer.Option(help="target format: official | ours")],
    seq_len: Annotated[
        int | None, typer.Option(help="sequence length, if an official checkpoint's dataset is absent")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "--data-path", help="dataset folder with train/dataset.json (gives seq_len)"),
    ] = None,
) -> None:
    """Convert a checkpoint to the official layout (checkpoint + all_config.yaml) or to ours."""
    with user_errors():
        if to not in ("official", "ours"):
            raise ConfigError(f"--to must be 'official' or 'ours', got {to!r}")
        if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):  # never mix two checkpoints' files
            raise FolderError(f"{dst} is not an empty folder; convert writes a checkpoint into a new or empty one")
        model = load_checkpoint(src, seq_len=seq_len, data_path=data)
        if to == "official":
            export_official_checkpoint(model, dst)
        else:
            save_checkpoint(model, dst)
    typer.echo(f"wrote {to} checkpoint of {type(model).__name__} to {dst}")


@app.command()
def publish(
    run: Annotated[Path, typer.Argument(help="a trained run directory")],
    out: Annotated[Path, typer.Argument(help="the model folder to write (e.g. zoo/my-model)")],
    card: Annotated[Path | None, typer.Option(help="model card (Markdown) for README.md")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="the run's dataset, if not where it was")] = None,
    include: Annotated[list[Path] | None, typer.Option(help="another file to copy in (repeatable)")] = None,
    push: Annotated[str | None, typer.Option(help="also upload to this Hugging Face Hub repo (owner/name)")] = None,
) -> None:
    """Package a run as a self-contained model folder (the Hub layout); optionally push it to the Hub."""
    with user_errors():
        text = None
        if card is not None:
            if not card.is_file():
                raise ConfigError(f"--card {card}: no such file")
            text = card.read_text()
        folder = publish_run(run, out, card=text, data=data, include=include or [])
    typer.echo(f"wrote model folder {folder}")
    if push:
        typer.echo(f"pushed to {push_folder(folder, push)}")


@app.command()
def curve(
    run: Annotated[Path, typer.Argument(help="a 9×9 Sudoku run trained with keep_checkpoints=true")],
    data: Annotated[Path | None, typer.Option(help="the run's dataset (default: where the run says)")] = None,
    every: Annotated[int, typer.Option(help="use every N-th kept checkpoint (the last always)")] = 1,
    banks: Annotated[str | None, typer.Option(help="also the shipped banks: all, or names (se_hard,...)")] = None,
    per_bank: Annotated[int, typer.Option(help="with --banks: puzzles drawn per bank (seeded)")] = 100,
    max_steps: Annotated[int | None, typer.Option(help="ACT steps per puzzle (default: the trained number)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="output folder (default: the run)")] = None,
) -> None:
    """Exact accuracy by givens (test split) and by difficulty bucket (banks) at every kept checkpoint:
    writes learning_curve.json and learning_curve.png."""
    with user_errors():
        names = bank_names(banks) if banks else ()
        if per_bank < 1:
            raise ConfigError(f"--per-bank must be at least 1, got {per_bank}")
        dataset = dataset_of_run(run, data)
        result = learning_curve(run, dataset, every, names, per_bank, max_steps, 64, resolve_device(device))
        folder = out or run
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "learning_curve.json", result)
        plot_learning_curve(result, folder / "learning_curve.png")
    for point in result["points"]:
        givens = "  ".join(f"{k}: {v['exact_accuracy']:.3f}" for k, v in point["test_by_givens"].items())
        buckets = "".join(
            f"  {k} {v['exact_accuracy']:.3f}" for k, v in point.get("buckets", {}).items() if v["puzzles"]
        )
        typer.echo(f"  step {point['step']:>6}  test {point['test_exact_accuracy']:.3f}  ({givens}){buckets}")
    typer.echo(f"wrote {folder}/learning_curve.json, learning_curve.png")
