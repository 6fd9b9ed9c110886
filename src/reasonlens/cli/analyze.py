"""``reasonlens analyze {convergence,dimensionality,steps,scaling,halting,fixed-points,lyapunov,rollouts} RUN``:
reasoning dynamics of an HRM-family checkpoint (our run directory or an official checkpoint folder) and why
it fails, written to ``RUN/analysis/`` as JSON + PNG and as a section of ``RUN/analysis/report.html`` (rebuilt
from whatever analyses are there); and ``reasonlens study``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reasonlens.cli.errors import user_errors
from reasonlens.hrm.analysis import dynamics, fixed_points, halting, lyapunov, pictures
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.studies import load_study, run_study, select
from reasonlens.hrm.evaluation import perturbed
from reasonlens.interp import InterpError
from reasonlens.interp.report import table_html, write_html_report
from reasonlens.utils.io import write_json

app = typer.Typer(
    help="Reasoning dynamics of an HRM checkpoint (convergence, dimensionality, steps, scaling) and why it fails "
    "(halting, fixed-points, lyapunov, rollouts)."
)

RunArg = Annotated[Path, typer.Argument(help="run directory (or official checkpoint folder)")]
DataOpt = Annotated[Path | None, typer.Option(help="dataset folder (default: the one the run was trained on)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="output folder (default: RUN/analysis)")]
DeviceOpt = Annotated[str, typer.Option(help="cpu | cuda | auto")]


ANALYSES = ("convergence", "dimensionality", "steps", "scaling", "halting", "fixed_points", "lyapunov", "rollouts")


def output_dir(run: str | Path, out: str | Path | None = None) -> Path:
    run = Path(run)
    folder = Path(out) if out else (run if run.is_dir() else run.parent) / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _adapter(run, data=None, device="cpu") -> HRMAdapter:
    if not Path(run).exists():
        raise InterpError(f"{run} does not exist; pass a run directory or an official checkpoint folder")
    return HRMAdapter.from_checkpoint(run, data, "test", device=device)


def _puzzles(adapter: HRMAdapter, n: int) -> list[int]:
    if n < 2:
        raise InterpError(f"--puzzles must be at least 2, got {n}")
    return list(range(min(n, adapter.num_examples)))


def _factor_steps(adapter: HRMAdapter, factor: int) -> int:
    if factor < 1:
        raise InterpError(f"--factor must be >= 1 (run up to factor × the trained ACT steps), got {factor}")
    return factor * adapter.model.config.halt_max_steps


def _save(run, out, name: str, result: dict, draw) -> dict:
    """Write ``name``.json and the picture ``draw(path)`` draws as ``name``.png, then rebuild the report."""
    folder = output_dir(run, out)
    write_json(folder / f"{name}.json", result)
    draw(folder / f"{name}.png")
    write_report(folder)
    return result


def run_convergence(
    run, data=None, puzzles: int = 64, compare: list[str] | None = None, out=None, device="cpu"
) -> dict:
    adapter = _adapter(run, data, device)
    result = dynamics.convergence(dynamics.collect_trajectories(adapter, _puzzles(adapter, puzzles)), adapter.model)
    result["run"] = str(run)
    others = {}
    for other in compare or []:
        other_adapter = _adapter(other, data or adapter.dataset_dir, device)
        trajectories = dynamics.collect_trajectories(other_adapter, _puzzles(other_adapter, puzzles))
        others[Path(other).name] = dynamics.convergence(trajectories, other_adapter.model)
    result["compared"] = others
    title = f"forward residuals: {Path(run).name}"
    return _save(run, out, "convergence", result, lambda path: pictures.convergence_plot(result, path, title, others))


def run_dimensionality(
    run, data=None, puzzles: int = 200, bootstrap: int = 100, out=None, device="cpu", solved: bool = False
) -> dict:
    """PR of z_H and z_L for the trained model and its untrained twin on the same puzzles. With ``solved``,
    the paper's protocol: the first ``puzzles`` test puzzles the trained model solves."""
    adapter = _adapter(run, data, device)
    indices = _puzzles(adapter, puzzles)
    if solved:
        indices = dynamics.solved_indices(adapter, range(adapter.num_examples), puzzles)
        if len(indices) < 2:
            raise InterpError(
                f"--solved: the model solves {len(indices)} of the {adapter.num_examples} test puzzles; "
                "at least 2 are needed (drop --solved to use every puzzle)"
            )
    trained = dynamics.dimensionality(dynamics.collect_trajectories(adapter, indices), adapter.model, bootstrap)
    twin = HRMAdapter(dynamics.untrained_twin(adapter.model), adapter.dataset_dir, "test", device=adapter.device)
    untrained = dynamics.dimensionality(dynamics.collect_trajectories(twin, indices), twin.model, bootstrap)
    result = {"run": str(run), "solved_only": solved, "trained": trained, "untrained": untrained, "paper": PAPER_PR}
    return _save(
        run, out, "dimensionality", result, lambda path: pictures.dimensionality_plot(trained, untrained, path)
    )


PAPER_PR = {"trained": {"PR_H": 89.95, "PR_L": 30.22, "ratio": 2.98}, "untrained": {"PR_H": 40.75, "PR_L": 42.09}}


def run_steps(
    run, data=None, puzzles: int = 3, steps: int | None = None, out=None, device="cpu", every_cycle: bool = False
) -> dict:
    """Pictures of the prediction after every ACT step; with ``every_cycle`` also after every high-level
    cycle (``puzzle_N_cycles.png`` / ``.gif``, and the accuracy per cycle in ``steps.json``)."""
    adapter = _adapter(run, data, device)
    trajectories = dynamics.collect_trajectories(adapter, _puzzles(adapter, max(2, puzzles)), steps)
    cycles = dynamics.cycle_view(trajectories, adapter.model) if every_cycle else None
    kind = pictures.dataset_kind(adapter.dataset_dir)
    folder = output_dir(run, out) / "steps"
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for puzzle in range(min(puzzles, trajectories.labels.shape[0])):
        pictures.step_strip(trajectories, puzzle, kind, folder / f"puzzle_{puzzle}.png")
        pictures.step_gif(trajectories, puzzle, kind, folder / f"puzzle_{puzzle}.gif")
        picture = {"puzzle": puzzle, "png": f"steps/puzzle_{puzzle}.png", "gif": f"steps/puzzle_{puzzle}.gif"}
        if cycles is not None:
            pictures.step_strip(cycles, puzzle, kind, folder / f"puzzle_{puzzle}_cycles.png", unit="cycle")
            pictures.step_gif(cycles, puzzle, kind, folder / f"puzzle_{puzzle}_cycles.gif", unit="cycle")
            picture |= {
                "cycles_png": f"steps/puzzle_{puzzle}_cycles.png",
                "cycles_gif": f"steps/puzzle_{puzzle}_cycles.gif",
            }
        drawn.append(picture)
    result = {
        "run": str(run),
        "kind": kind,
        "act_steps": trajectories.steps,
        "pictures": drawn,
        "q_halt": trajectories.q_halt[:, : len(drawn)].T.tolist(),
        "q_continue": trajectories.q_continue[:, : len(drawn)].T.tolist(),
        "accuracy": dynamics.per_step_accuracy(trajectories),
    }
    if cycles is not None:
        per_step = cycles.steps // trajectories.steps
        result["cycles"] = cycles.steps
        result["cycle_accuracy"] = [
            {"cycle": i + 1, "act_step": i // per_step + 1, "exact": row["exact"], "token": row["token"]}
            for i, row in enumerate(dynamics.per_step_accuracy(cycles))
        ]
    write_json(folder.parent / "steps.json", result)
    write_report(folder.parent)
    return result


def run_scaling(run, data=None, puzzles: int = 500, factor: int = 4, out=None, device="cpu") -> dict:
    """Accuracy after 1, 2, 4, … up to ``factor`` × the trained ``halt_max_steps`` ACT steps, from one rollout
    (eval never halts early, so ACT step m of a long rollout is ACT step m of a short one)."""
    adapter = _adapter(run, data, device)
    trained = adapter.model.config.halt_max_steps
    longest = _factor_steps(adapter, factor)
    trajectories = dynamics.collect_trajectories(adapter, _puzzles(adapter, puzzles), longest, keep_states=False)
    every = dynamics.per_step_accuracy(trajectories)
    marks = sorted({2**i for i in range(longest.bit_length()) if 2**i <= longest} | {trained, longest})
    rows = [every[m - 1] for m in marks]
    result = {"run": str(run), "trained_act_steps": trained, "puzzles": trajectories.labels.shape[0], "rows": rows}
    return _save(run, out, "scaling", result, lambda path: pictures.scaling_plot(rows, trained, path))


def run_halting(run, data=None, puzzles: int = 1000, factor: int = 1, out=None, device="cpu") -> dict:
    """Q-halting vs fixed Mmax (Mmax = ``factor`` × the trained ACT steps) and the Q head as a classifier."""
    adapter = _adapter(run, data, device)
    steps = _factor_steps(adapter, factor)
    trajectories = dynamics.collect_trajectories(adapter, _puzzles(adapter, puzzles), steps, keep_states=False)
    result = {"run": str(run), "trained_act_steps": adapter.model.config.halt_max_steps}
    result |= halting.halting_report(trajectories)
    return _save(run, out, "halting", result, lambda path: pictures.halting_plot(result, path))


def run_fixed_points(
    run,
    data=None,
    puzzles: int = 1000,
    factor: int = 4,
    window: int = 4,
    max_period: int = 8,
    tolerance: float = 1e-3,
    starts: int = 4,
    std: float = 1.0,
    one_blank: bool = True,
    out=None,
    device="cpu",
) -> dict:
    """Settling classes over ``factor`` × the trained ACT steps, guessing from ``starts`` starts (over the
    trained ACT steps) and, on Sudoku, the one-blank probe over twice the trained ACT steps (at least what the
    window needs; module :mod:`~reasonlens.hrm.analysis.fixed_points`)."""
    adapter = _adapter(run, data, device)
    steps = _factor_steps(adapter, factor)
    batches = adapter.batches(_puzzles(adapter, puzzles))
    settle = {"window": window, "max_period": max_period, "tolerance": tolerance}
    report, clean = fixed_points.settling(adapter.model, batches, steps, **settle)
    result = {"run": str(run), "settling": report}
    trained = adapter.model.config.halt_max_steps
    result["guessing"] = (
        fixed_points.guessing(adapter.model, batches, trained, starts, std, clean=clean) if starts > 1 else None
    )
    is_sudoku = pictures.dataset_kind(adapter.dataset_dir) == "sudoku"
    blank_steps = max(2 * trained, window + max_period - 1)
    result["one_blank"] = (
        fixed_points.one_blank(adapter.model, batches, blank_steps, **settle) if one_blank and is_sudoku else None
    )
    return _save(run, out, "fixed_points", result, lambda path: pictures.settling_plot(result["settling"], path))


def run_lyapunov(
    run, data=None, puzzles: int = 1000, factor: int = 2, burn_in: int = 2, out=None, device="cpu"
) -> dict:
    """λ₁ per puzzle over ``factor`` × the trained ACT steps, and how well it predicts failure."""
    adapter = _adapter(run, data, device)
    steps = _factor_steps(adapter, factor)
    result = {"run": str(run), "trained_act_steps": adapter.model.config.halt_max_steps}
    result |= lyapunov.lyapunov(adapter.model, adapter.batches(_puzzles(adapter, puzzles)), steps, burn_in)
    return _save(run, out, "lyapunov", result, lambda path: pictures.lyapunov_plot(result, path))


def run_rollouts(
    run,
    data=None,
    puzzles: int = 1000,
    rollouts: int = 8,
    noise: float = 0.0,
    symmetries: bool = True,
    max_steps: int | None = None,
    out=None,
    device="cpu",
) -> dict:
    """Accuracy against K = 1, 2, 4, … ``rollouts`` perturbed rollouts, by vote and by Q."""
    perturbed.check_rollout_args(rollouts, "vote", noise, symmetries)
    adapter = _adapter(run, data, device)
    batches = adapter.batches(_puzzles(adapter, puzzles))
    task = pictures.dataset_kind(adapter.dataset_dir)
    answers = perturbed.perturbed_answers(adapter.model, batches, rollouts, max_steps, task, symmetries, noise)
    curve = answers.curve(perturbed.rollout_counts(rollouts))
    result = {
        "run": str(run),
        "puzzles": int(answers.labels.shape[0]),
        "act_steps": answers.steps,
        "symmetries": symmetries,
        "noise": noise,
        "curve": curve,
    }
    best = max(curve, key=lambda row: (max(row["vote"], row["q"]), -row["rollouts"]))  # the smallest best K
    result["best"] = answers.gain("vote" if best["vote"] >= best["q"] else "q", best["rollouts"])
    return _save(run, out, "rollouts", result, lambda path: pictures.rollouts_plot(curve, path))


def write_report(folder: Path) -> Path:
    """``report.html`` with a section per analysis present in ``folder``."""
    sections: list[tuple[str, str | Path]] = []
    if (folder / "convergence.json").exists():
        sections.append(("Convergence: forward residuals", folder / "convergence.png"))
    if (folder / "dimensionality.json").exists():
        result = json.loads((folder / "dimensionality.json").read_text())
        rows = [
            {"model": name, **{k: result[name][k] for k in ("PR_H", "PR_L", "ratio")}}
            for name in ("trained", "untrained")
        ]
        rows.append({"model": "paper (trained)", **PAPER_PR["trained"]})
        sections.append(("Dimensionality: participation ratios", table_html(rows)))
        sections.append(("PR of z_H and z_L", folder / "dimensionality.png"))
    if (folder / "steps.json").exists():
        result = json.loads((folder / "steps.json").read_text())
        for picture in result["pictures"]:
            sections.append((f"Reasoning steps: puzzle {picture['puzzle']}", folder / picture["png"]))
            if "cycles_png" in picture:
                sections.append((f"Every cycle: puzzle {picture['puzzle']}", folder / picture["cycles_png"]))
        if "cycle_accuracy" in result:
            sections.append(("Accuracy after every high-level cycle", table_html(result["cycle_accuracy"])))
    if (folder / "scaling.json").exists():
        result = json.loads((folder / "scaling.json").read_text())
        sections.append(("Inference-time scaling", table_html(result["rows"])))
        sections.append(("Accuracy vs ACT steps", folder / "scaling.png"))
    if (folder / "halting.json").exists():
        result = json.loads((folder / "halting.json").read_text())
        rows = [
            {"evaluation": "fixed Mmax", **{k: result["fixed"][k] for k in ("exact", "mean_steps")}},
            {"evaluation": "Q-halting", **{k: result["q_halting"][k] for k in ("exact", "mean_steps")}},
        ]
        sections.append(("Halting: Q-halting vs fixed Mmax", table_html(rows)))
        sections.append(("Halting steps and Q-head calibration", folder / "halting.png"))
    if (folder / "fixed_points.json").exists():
        result = json.loads((folder / "fixed_points.json").read_text())
        sections.append(("Fixed points: settling classes", table_html(result["settling"]["classes"])))
        sections.append(("Residuals of solved and failed puzzles", folder / "fixed_points.png"))
        if result.get("guessing"):
            guess = result["guessing"]
            keys = ("starts", "clean_exact", "any_start_exact", "majority_exact", "mean_distinct_answers")
            sections.append(("Guessing: answers from perturbed starts", table_html([{k: guess[k] for k in keys}])))
        if result.get("one_blank"):
            sections.append(("One blank cell", table_html(result["one_blank"]["classes"])))
    if (folder / "lyapunov.json").exists():
        result = json.loads((folder / "lyapunov.json").read_text())
        rows = [
            {"outcome": k, **{m: result[k][m] for m in ("puzzles", "median", "q25", "q75")}}
            for k in ("solved", "failed")
            if result[k]
        ]
        sections.append((f"Lyapunov exponents (AUC of failure {result['auc_failure']})", table_html(rows)))
        sections.append(("λ₁ of solved and failed puzzles", folder / "lyapunov.png"))
    if (folder / "rollouts.json").exists():
        result = json.loads((folder / "rollouts.json").read_text())
        sections.append(("Perturbed rollouts: accuracy vs K", table_html(result["curve"])))
        sections.append(("The best K's gain over K = 1 (95% paired bootstrap)", table_html([result["best"]])))
        sections.append(("Accuracy vs rollouts", folder / "rollouts.png"))
    return write_html_report(folder / "report.html", "Reasoning dynamics", sections)


# ----------------------------------------------------------------------------------- commands


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
    with user_errors():
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
    solved: Annotated[
        bool, typer.Option(help="only puzzles the model solves (the paper's protocol: 100 solving trajectories)")
    ] = False,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Participation ratios of z_H and z_L, trained vs untrained, with PR_H/PR_L and a bootstrap interval."""
    with user_errors():
        result = run_dimensionality(run, data, puzzles, bootstrap, out, device, solved)
    typer.echo(f"  {result['trained']['trajectories']} trajectories" + (" (solved puzzles)" if solved else ""))
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
    act_steps: Annotated[int | None, typer.Option(help="ACT steps to run (default: the trained number)")] = None,
    every_cycle: Annotated[bool, typer.Option(help="also draw the prediction after every high-level cycle")] = False,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The prediction after every ACT step (and with --every-cycle every high-level cycle) as PNG strips
    and animated GIFs, with the halting Q values."""
    with user_errors():
        result = run_steps(run, data, puzzles, act_steps, out, device, every_cycle)
    typer.echo(f"  {len(result['pictures'])} puzzles × {result['act_steps']} ACT steps ({result['kind']})")
    for row in result.get("cycle_accuracy", []):
        typer.echo(
            f"  cycle {row['cycle']:>2} (ACT step {row['act_step']}): "
            f"exact {row['exact']:.3f}  token {row['token']:.3f}"
        )
    typer.echo(f"wrote {output_dir(run, out)}/steps/ (PNG + GIF), steps.json, report.html")


@app.command()
def scaling(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 500,
    factor: Annotated[int, typer.Option(help="run up to factor × the trained halt_max_steps ACT steps")] = 4,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Inference-time scaling: accuracy at 1, 2, 4, … up to factor × halt_max_steps ACT steps, and with Q halting."""
    with user_errors():
        result = run_scaling(run, data, puzzles, factor, out, device)
    for row in result["rows"]:
        typer.echo(
            f"  {row['act_steps']:>3} ACT steps: exact {row['exact']:.3f}  token {row['token']:.3f}  "
            f"with Q halting {row['exact_with_halting']:.3f} in {row['mean_steps_with_halting']:.2f} ACT steps"
        )
    typer.echo(f"wrote {output_dir(run, out)}/scaling.json, scaling.png, report.html")


@app.command("halting")
def halting_command(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 1000,
    factor: Annotated[int, typer.Option(help="Mmax = factor × the trained halt_max_steps")] = 1,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Q-halting vs fixed Mmax at evaluation, and the Q head as a classifier of 'already right'."""
    with user_errors():
        result = run_halting(run, data, puzzles, factor, out, device)
    for line in halting.halting_lines(result):
        typer.echo(line)
    typer.echo(f"wrote {output_dir(run, out)}/halting.json, halting.png, report.html")


@app.command("fixed-points")
def fixed_points_command(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 1000,
    factor: Annotated[int, typer.Option(help="run factor × the trained ACT steps")] = 4,
    window: Annotated[int, typer.Option(help="final segments a class must hold over")] = 4,
    max_period: Annotated[int, typer.Option(help="longest cycle looked for")] = 8,
    tolerance: Annotated[float, typer.Option(help="relative distance below which states are equal")] = 1e-3,
    starts: Annotated[int, typer.Option(help="starts for guessing (the clean one + perturbed ones; 1: skip)")] = 4,
    std: Annotated[float, typer.Option(help="noise std on the first ACT step's states of a perturbed start")] = 1.0,
    one_blank: Annotated[bool, typer.Option(help="Sudoku: also the one-blank-cell probe")] = True,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Where trajectories end (settled-correct, settled-wrong, cycling, wandering), guessing from perturbed
    starts, and puzzles with one blank cell."""
    with user_errors():
        result = run_fixed_points(
            run, data, puzzles, factor, window, max_period, tolerance, starts, std, one_blank, out, device
        )
    settle = result["settling"]
    typer.echo(f"  {settle['puzzles']} puzzles × {settle['steps']} ACT steps: exact {settle['exact']:.3f}")
    for row in settle["classes"]:
        exact = "—" if row["exact"] is None else f"{row['exact']:.3f}"
        typer.echo(f"  {row['class']:<16} {row['count']:>5}  ({100 * row['share']:.1f}%)  exact {exact}")
    if result["guessing"]:
        g = result["guessing"]
        typer.echo(
            f"  guessing ({g['starts']} starts): {g['mean_distinct_answers']:.2f} distinct answers per puzzle; "
            f"clean {g['clean_exact']:.3f}, any start {g['any_start_exact']:.3f}, majority {g['majority_exact']:.3f}"
        )
    if result["one_blank"]:
        typer.echo(f"  one blank cell: exact {result['one_blank']['exact']:.3f} of {result['one_blank']['puzzles']}")
    typer.echo(f"wrote {output_dir(run, out)}/fixed_points.json, fixed_points.png, report.html")


@app.command("lyapunov")
def lyapunov_command(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 1000,
    factor: Annotated[int, typer.Option(help="segments = factor × the trained ACT steps")] = 2,
    burn_in: Annotated[int, typer.Option(help="segments before λ₁ is averaged")] = 2,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The leading finite-time Lyapunov exponent of the segment map per puzzle (JVPs), and its AUC for failure."""
    with user_errors():
        result = run_lyapunov(run, data, puzzles, factor, burn_in, out, device)
    for outcome in ("solved", "failed"):
        if result[outcome]:
            r = result[outcome]
            typer.echo(
                f"  {outcome:<6} {r['puzzles']:>5}  median λ₁ {r['median']:+.4f}  "
                f"(IQR {r['q25']:+.4f} to {r['q75']:+.4f})"
            )
    auc = result["auc_failure"]
    typer.echo("  AUC of λ₁ for failure: " + ("n/a (one class only)" if auc is None else f"{auc:.3f}"))
    typer.echo(f"wrote {output_dir(run, out)}/lyapunov.json, lyapunov.png, report.html")


@app.command("rollouts")
def rollouts_command(
    run: RunArg,
    data: DataOpt = None,
    puzzles: Annotated[int, typer.Option(help="test puzzles")] = 1000,
    rollouts: Annotated[int, typer.Option(help="largest K (the curve has 1, 2, 4, … K)")] = 8,
    noise: Annotated[float, typer.Option(help="state-noise std for rollouts 2..K (0: none)")] = 0.0,
    symmetries: Annotated[bool, typer.Option(help="transform each rollout by a task symmetry")] = True,
    max_steps: Annotated[int | None, typer.Option(help="ACT steps per rollout (default: the trained number)")] = None,
    out: OutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Perturbed rollouts at inference: accuracy against K by majority vote and by the Q head."""
    with user_errors():
        result = run_rollouts(run, data, puzzles, rollouts, noise, symmetries, max_steps, out, device)
    for row in result["curve"]:
        typer.echo(
            f"  K={row['rollouts']:>3}: vote {row['vote']:.3f}  q {row['q']:.3f}  oracle {row['oracle']:.3f}  "
            f"({row['act_steps_per_puzzle']} ACT steps per puzzle)"
        )
    best = result["best"]
    low, high = best["interval_95"]
    typer.echo(
        f"  best: K={best['rollouts']} by {best['selection']}, {100 * best['gain']:+.1f} points over K=1 "
        f"(95% {100 * low:+.1f} to {100 * high:+.1f})"
    )
    typer.echo(f"wrote {output_dir(run, out)}/rollouts.json, rollouts.png, report.html")


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
    with user_errors():
        if not config.is_file():
            raise InterpError(f"study config {config} does not exist")
        study = select(load_study(config), overrides or [], only.split(",") if only else None)
        run_study(study, out, retrain, log=typer.echo)
    typer.echo((out / "study.md").read_text())
