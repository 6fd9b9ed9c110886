"""``reasonlens analyze {convergence,dimensionality,steps,scaling} RUN``: reasoning dynamics of an HRM-family
checkpoint (our run directory or an official checkpoint folder), written to ``RUN/analysis/`` as JSON +
PNG and as a section of ``RUN/analysis/report.html``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Reasoning dynamics of an HRM checkpoint: convergence, dimensionality, steps, scaling.")

RunArg = Annotated[Path, typer.Argument(help="run directory (or official checkpoint folder)")]
DataOpt = Annotated[Path | None, typer.Option(help="dataset folder (default: the one the run was trained on)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="output folder (default: RUN/analysis)")]
DeviceOpt = Annotated[str, typer.Option(help="cpu | cuda | auto")]


@contextlib.contextmanager
def analysis_errors():
    from reasonlens.cli.errors import friendly_errors
    from reasonlens.interp import InterpError

    with friendly_errors():
        try:
            yield
        except InterpError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None


@app.command()
def convergence(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles to average over")] = 64,
    compare: Annotated[list[Path] | None, typer.Option(help="another run (e.g. a baseline) on the same plot")] = None,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Forward residuals ‖z_i − z_{i−1}‖ of z_L at every low-level step and z_H at every update."""
    from reasonlens.hrm.analyze import output_dir, run_convergence

    with analysis_errors():
        result = run_convergence(run, data, puzzles, [str(c) for c in compare or []], out, device)
    for module, values in result["modules"].items():
        first, last = values["relative"][0], values["relative"][-1]
        typer.echo(f"  {module}: relative residual {first:.3g} → {last:.3g} over {values['calls']} calls")
    typer.echo(f"wrote {output_dir(run, out)}/convergence.json, convergence.png, report.html")


@app.command()
def dimensionality(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="trajectories (test puzzles)")] = 200,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for the PR_H/PR_L interval")] = 100,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Participation ratios of z_H and z_L, trained vs untrained, with PR_H/PR_L and a bootstrap interval."""
    from reasonlens.hrm.analyze import output_dir, run_dimensionality

    with analysis_errors():
        result = run_dimensionality(run, data, puzzles, bootstrap, out, device)
    for name in ("trained", "untrained"):
        r = result[name]
        low, high = r["ratio_95"]
        interval = f" (95% {low:.2f}–{high:.2f})" if low is not None else ""
        typer.echo(f"  {name:<9} PR_H {r['PR_H']:.2f}  PR_L {r['PR_L']:.2f}  ratio {r['ratio']:.2f}{interval}")
    typer.echo("  paper     PR_H 89.95  PR_L 30.22  ratio 2.98 (trained); 40.75 / 42.09 untrained")
    typer.echo(f"wrote {output_dir(run, out)}/dimensionality.json, dimensionality.png, report.html")


@app.command()
def steps(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="puzzles to draw")] = 3,
    segments: Annotated[int | None, typer.Option(help="segments to run (default: the trained Mmax)")] = None,
    every_cycle: Annotated[bool, typer.Option(help="also draw the prediction after every high-level cycle")] = False,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The prediction after every segment (and with --every-cycle every high-level cycle) as PNG strips
    and animated GIFs, with the halting Q values."""
    from reasonlens.hrm.analyze import output_dir, run_steps

    with analysis_errors():
        result = run_steps(run, data, puzzles, segments, out, device, every_cycle)
    typer.echo(f"  {len(result['pictures'])} puzzles × {result['segments']} segments ({result['kind']})")
    for row in result.get("cycle_accuracy", []):
        typer.echo(
            f"  cycle {row['cycle']:>2} (segment {row['segment']}): exact {row['exact']:.3f}  token {row['token']:.3f}"
        )
    typer.echo(f"wrote {output_dir(run, out)}/steps/ (PNG + GIF), steps.json, report.html")


@app.command()
def scaling(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 500,
    factor: Annotated[int, typer.Option(help="run up to factor × the trained Mmax segments")] = 4,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Inference-time scaling: accuracy at 1, 2, 4, … up to factor × Mmax segments, and with Q halting."""
    from reasonlens.hrm.analyze import output_dir, run_scaling

    with analysis_errors():
        result = run_scaling(run, data, puzzles, factor, out, device)
    for row in result["rows"]:
        typer.echo(
            f"  {row['segments']:>3} segments: exact {row['exact']:.3f}  token {row['token']:.3f}  "
            f"with Q halting {row['exact_with_halting']:.3f} in {row['mean_steps_with_halting']:.2f} segments"
        )
    typer.echo(f"wrote {output_dir(run, out)}/scaling.json, scaling.png, report.html")


def study(
    config: Annotated[Path, typer.Argument(help="a study YAML (configs/studies/*.yaml)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the variants' runs and the table")],
    retrain: Annotated[bool, typer.Option(help="train variants again even if a finished run exists")] = False,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE added to every variant (e.g. seed=1); repeatable")
    ] = None,
    only: Annotated[str | None, typer.Option("--only", help="comma-separated variants to run (default: all)")] = None,
) -> None:
    """Train every variant of a study and tabulate accuracy, memory, PR and convergence (study.md)."""
    from reasonlens.hrm.studies import load_study, run_study, select

    with analysis_errors():
        if not config.is_file():
            from reasonlens.interp import InterpError

            raise InterpError(f"study config {config} does not exist")
        study = select(load_study(config), overrides or [], only.split(",") if only else None)
        run_study(study, out, retrain, log=typer.echo)
    typer.echo((out / "study.md").read_text())
