"""Entry point of the ``reasonlens`` command: root commands and the command groups."""

from __future__ import annotations

import torch
import typer

import reasonlens
from reasonlens.cli.agents import app as agents_app
from reasonlens.cli.analyze import app as analyze_app
from reasonlens.cli.analyze import study as analyze_study
from reasonlens.cli.data import app as data_app
from reasonlens.cli.demo import demo
from reasonlens.cli.evaluate import evaluate
from reasonlens.cli.hrm import app as hrm_app
from reasonlens.cli.lm import app as lm_app
from reasonlens.cli.patch import main_batch, main_single
from reasonlens.cli.solve import solve
from reasonlens.cli.train import train
from reasonlens.utils.device import resolve_device

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
app.command()(demo)
app.command()(train)
app.command()(evaluate)
app.command()(solve)


PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("patch", context_settings=PASS_THROUGH, add_help_option=False)
def patch(ctx: typer.Context) -> None:
    """One HRM activation-patching experiment (flags of scripts/activation_patching.py; --help for them)."""
    raise typer.Exit(main_single(ctx.args))


@app.command("patch-batch", context_settings=PASS_THROUGH, add_help_option=False)
def patch_batch(ctx: typer.Context) -> None:
    """Many HRM patching experiments, batched (flags of scripts/batch_activation_patching.py; --help for them)."""
    raise typer.Exit(main_batch(ctx.args))


@app.command()
def version() -> None:
    """Print the versions of reasonlens and torch, and the default device."""
    typer.echo(f"reasonlens {reasonlens.__version__}, torch {torch.__version__}, device {resolve_device('auto')}")


if __name__ == "__main__":
    app()
