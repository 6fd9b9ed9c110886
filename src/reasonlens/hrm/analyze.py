"""``reasonlens analyze {convergence,dimensionality,steps,scaling} RUN``: each analysis of
:mod:`reasonlens.hrm.dynamics` on a checkpoint, written as JSON + PNG into ``RUN/analysis/`` and as a
section of ``RUN/analysis/report.html`` (rebuilt from whatever analyses are there)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reasonlens.hrm import dynamics, viz
from reasonlens.hrm.checkpoint import build_model, model_arch
from reasonlens.hrm.patching import HRMAdapter
from reasonlens.interp import InterpError
from reasonlens.interp.report import table_html, write_html_report
from reasonlens.utils.io import write_json

ANALYSES = ("convergence", "dimensionality", "steps", "scaling")


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


def untrained_twin(model, seed: int = 0):
    """The same architecture, freshly initialised (the paper's "untrained" reference)."""
    torch.manual_seed(seed)
    return build_model(model_arch(model), model.config.model_dump()).to(next(model.parameters()).device).eval()


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
    folder = output_dir(run, out)
    write_json(folder / "convergence.json", result)
    viz.convergence_plot(result, folder / "convergence.png", f"forward residuals: {Path(run).name}", others)
    write_report(folder)
    return result


def run_dimensionality(run, data=None, puzzles: int = 200, bootstrap: int = 100, out=None, device="cpu") -> dict:
    adapter = _adapter(run, data, device)
    indices = _puzzles(adapter, puzzles)
    trained = dynamics.dimensionality(dynamics.collect_trajectories(adapter, indices), adapter.model, bootstrap)
    twin = HRMAdapter(untrained_twin(adapter.model), adapter.dataset_dir, "test", device=adapter.device)
    untrained = dynamics.dimensionality(dynamics.collect_trajectories(twin, indices), twin.model, bootstrap)
    result = {"run": str(run), "trained": trained, "untrained": untrained, "paper": PAPER_PR}
    folder = output_dir(run, out)
    write_json(folder / "dimensionality.json", result)
    viz.dimensionality_plot(trained, untrained, folder / "dimensionality.png")
    write_report(folder)
    return result


PAPER_PR = {"trained": {"PR_H": 89.95, "PR_L": 30.22, "ratio": 2.98}, "untrained": {"PR_H": 40.75, "PR_L": 42.09}}


def run_steps(
    run, data=None, puzzles: int = 3, steps: int | None = None, out=None, device="cpu", every_cycle: bool = False
) -> dict:
    """Pictures of the prediction after every segment; with ``every_cycle`` also after every high-level
    cycle (``puzzle_N_cycles.png`` / ``.gif``, and the accuracy per cycle in ``steps.json``)."""
    adapter = _adapter(run, data, device)
    trajectories = dynamics.collect_trajectories(adapter, _puzzles(adapter, max(2, puzzles)), steps)
    cycles = dynamics.cycle_view(trajectories, adapter.model) if every_cycle else None
    kind = viz.dataset_kind(adapter.dataset_dir)
    folder = output_dir(run, out) / "steps"
    folder.mkdir(parents=True, exist_ok=True)
    pictures = []
    for puzzle in range(min(puzzles, trajectories.labels.shape[0])):
        viz.step_strip(trajectories, puzzle, kind, folder / f"puzzle_{puzzle}.png")
        viz.step_gif(trajectories, puzzle, kind, folder / f"puzzle_{puzzle}.gif")
        picture = {"puzzle": puzzle, "png": f"steps/puzzle_{puzzle}.png", "gif": f"steps/puzzle_{puzzle}.gif"}
        if cycles is not None:
            viz.step_strip(cycles, puzzle, kind, folder / f"puzzle_{puzzle}_cycles.png", unit="cycle")
            viz.step_gif(cycles, puzzle, kind, folder / f"puzzle_{puzzle}_cycles.gif", unit="cycle")
            picture |= {
                "cycles_png": f"steps/puzzle_{puzzle}_cycles.png",
                "cycles_gif": f"steps/puzzle_{puzzle}_cycles.gif",
            }
        pictures.append(picture)
    result = {
        "run": str(run),
        "kind": kind,
        "segments": trajectories.steps,
        "pictures": pictures,
        "q_halt": trajectories.q_halt[:, : len(pictures)].T.tolist(),
        "q_continue": trajectories.q_continue[:, : len(pictures)].T.tolist(),
        "accuracy": dynamics.per_step_accuracy(trajectories),
    }
    if cycles is not None:
        per_segment = cycles.steps // trajectories.steps
        result["cycles"] = cycles.steps
        result["cycle_accuracy"] = [
            {"cycle": i + 1, "segment": i // per_segment + 1, "exact": row["exact"], "token": row["token"]}
            for i, row in enumerate(dynamics.per_step_accuracy(cycles))
        ]
    write_json(folder.parent / "steps.json", result)
    write_report(folder.parent)
    return result


def run_scaling(run, data=None, puzzles: int = 500, factor: int = 4, out=None, device="cpu") -> dict:
    """Accuracy after 1, 2, 4, … up to ``factor`` × the trained Mmax segments, from one rollout (eval never
    halts early, so segment m of a long rollout is segment m of a short one)."""
    adapter = _adapter(run, data, device)
    trained = adapter.model.config.halt_max_steps
    longest = factor * trained
    trajectories = dynamics.collect_trajectories(adapter, _puzzles(adapter, puzzles), longest)
    every = dynamics.per_step_accuracy(trajectories)
    marks = sorted({2**i for i in range(longest.bit_length()) if 2**i <= longest} | {trained, longest})
    rows = [every[m - 1] for m in marks]
    result = {"run": str(run), "trained_segments": trained, "puzzles": trajectories.labels.shape[0], "rows": rows}
    folder = output_dir(run, out)
    write_json(folder / "scaling.json", result)
    viz.scaling_plot(rows, trained, folder / "scaling.png")
    write_report(folder)
    return result


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
        sections.append(("Accuracy vs segments", folder / "scaling.png"))
    return write_html_report(folder / "report.html", "Reasoning dynamics", sections)
