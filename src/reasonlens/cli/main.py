"""Entry point of the ``reasonlens`` command: root commands and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonlens.cli.agents import app as agents_app
from reasonlens.cli.analyze import app as analyze_app
from reasonlens.cli.analyze import study as analyze_study
from reasonlens.cli.data import app as data_app
from reasonlens.cli.errors import friendly_errors
from reasonlens.cli.hrm import app as hrm_app
from reasonlens.cli.lm import app as lm_app
from reasonlens.cli.train import evaluate, train

app = typer.Typer(
    help="Train small reasoning models and take them apart.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(hrm_app, name="hrm")
app.add_typer(data_app, name="data")
app.add_typer(agents_app, name="agents")
app.add_typer(lm_app, name="lm")
app.add_typer(analyze_app, name="analyze")
app.command(name="study")(analyze_study)
app.command()(train)
app.command()(evaluate)


@app.command()
def demo(
    out: Annotated[str, typer.Option(help="run directory (its dataset goes to OUT-data)")] = "runs/demo",
    size: Annotated[int, typer.Option(help="Sudoku size: 4 (fits 10 minutes on 2 cores) or 6 (needs longer)")] = 4,
    epochs: Annotated[int, typer.Option(help="training epochs over the 20,000 puzzles")] = 12,
    seed: Annotated[int, typer.Option(help="seed for the puzzles, the init and the data order")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
) -> None:
    """The main job: build a small Sudoku dataset, train HRM-ACT-v1, evaluate it on held-out puzzles."""
    from rich.console import Console
    from rich.table import Table

    from reasonlens.hrm.demo import DemoConfig, run_demo

    with friendly_errors():
        summary = run_demo(DemoConfig(out_dir=out, size=size, epochs=epochs, seed=seed, device=device), log=typer.echo)
    table = Table(title=f"reasonlens demo: HRM-ACT-v1 on {size}x{size} Sudoku")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("train / held-out puzzles", f"{summary['train_puzzles']:,} / {summary['test_puzzles']:,}"),
        ("parameters", f"{summary['parameters']:,}"),
        ("steps (batch 64)", f"{summary['steps']:,}"),
        ("training time", f"{summary['train_seconds']:.0f} s on {summary['device']}"),
        ("exact accuracy (held-out)", f"{summary['eval/exact_accuracy']:.1%}"),
        ("cell accuracy (held-out)", f"{summary['eval/accuracy']:.1%}"),
        ("q-halt accuracy", f"{summary['eval/q_halt_accuracy']:.1%}"),
        ("segments per puzzle", f"{summary['eval/steps']:.0f}"),
        ("run directory", summary["run_dir"]),
    ]
    if "patching_report" in summary:
        rows.append(
            (
                "patching sweep",
                f"{summary['patching_experiments']:,} experiments in {summary['patching_seconds']:.1f} s",
            )
        )
        rows.append(("patching report", summary["patching_report"]))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("patch", context_settings=PASS_THROUGH, add_help_option=False)
def patch(ctx: typer.Context) -> None:
    """One HRM activation-patching experiment (flags of scripts/activation_patching.py; --help for them)."""
    from reasonlens.hrm.patching_cli import main_single

    raise typer.Exit(main_single(ctx.args))


@app.command("patch-batch", context_settings=PASS_THROUGH, add_help_option=False)
def patch_batch(ctx: typer.Context) -> None:
    """Many HRM patching experiments, batched (flags of scripts/batch_activation_patching.py; --help for them)."""
    from reasonlens.hrm.patching_cli import main_batch

    raise typer.Exit(main_batch(ctx.args))


@app.command()
def version() -> None:
    """Print the versions of reasonlens and torch, and the default device."""
    import torch

    import reasonlens
    from reasonlens.utils.device import resolve_device

    typer.echo(f"reasonlens {reasonlens.__version__}, torch {torch.__version__}, device {resolve_device('auto')}")


if __name__ == "__main__":
    app()
