"""Entry point of the ``reasonlens`` command: root commands and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonlens.cli.errors import friendly_errors
from reasonlens.cli.hrm import app as hrm_app
from reasonlens.cli.train import evaluate, train

app = typer.Typer(
    help="Train small reasoning models and take them apart.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(hrm_app, name="hrm")
app.command()(train)
app.command()(evaluate)


@app.command()
def smoke(
    steps: Annotated[int, typer.Option(help="training steps")] = 1000,
    out: Annotated[str, typer.Option(help="run directory to write")] = "runs/smoke",
    seed: Annotated[int, typer.Option(help="seed for init, data and exploration")] = 0,
    batch_size: Annotated[int, typer.Option(help="rows per step")] = 64,
) -> None:
    """Short CPU training run of a tiny HRM-ACT-v1 (digit sorting, 2 puzzle ids), with checkpoint round trips."""
    from reasonlens.hrm.smoke import SmokeConfig, run_smoke

    with friendly_errors():
        summary = run_smoke(SmokeConfig(steps=steps, out_dir=out, seed=seed, batch_size=batch_size), log=typer.echo)
    typer.echo(
        f"done in {summary['train_seconds']}s: eval token accuracy {summary['eval_token_accuracy']:.3f} "
        f"(chance {summary['chance_token_accuracy']:.3f}), exact {summary['eval_exact_accuracy']:.3f}; "
        f"reloaded checkpoints identical: {summary['reload_identical']}; outputs in {out}/"
    )
    if not all(summary["reload_identical"].values()):
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the versions of reasonlens and torch, and the default device."""
    import torch

    import reasonlens
    from reasonlens.utils.device import resolve_device

    typer.echo(f"reasonlens {reasonlens.__version__}, torch {torch.__version__}, device {resolve_device('auto')}")


if __name__ == "__main__":
    app()
