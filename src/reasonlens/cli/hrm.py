"""``reasonlens hrm ...``: inspect model configs, convert checkpoints between our and the official format, and
publish a run as a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.training.checkpoint import build_model, export_official_checkpoint, load_checkpoint, save_checkpoint
from reasonlens.hrm.training.publish import publish_run, push_folder
from reasonlens.utils.config import ConfigError
from reasonlens.utils.io import FolderError, read_yaml

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
