"""Pictures of HRM reasoning dynamics: forward residuals, participation ratios, the prediction after
every ACT step (PNG strips and an animated GIF, with the halting Q values), inference-time scaling, halting,
settling, Lyapunov exponents and perturbed rollouts.
Matplotlib runs headless; every file is written atomically.

Boards: a Sudoku cell shows its predicted digit, grey if it was given, green if right, red if wrong, with
an orange frame when it changed since the previous ACT step. A maze cell is black (wall), white (free),
blue (predicted path, right) or red (predicted path, wrong — or a path cell the prediction misses);
S and G are marked.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from reasonlens.interp.report import pyplot, save_figure
from reasonlens.utils.io import atomic_write


def dataset_kind(dataset_dir: str | Path) -> str:
    """``sudoku``, ``maze`` or ``grid`` (anything else), from the dataset's ``build.json``."""
    build = Path(dataset_dir) / "build.json"
    if not build.exists():
        return "grid"
    info = json.loads(build.read_text())
    if "tie_break" in info or "min_path_length" in info:
        return "maze"
    if "difficulty_backtracks" in info:
        return "sudoku"
    return "grid"


# ------------------------------------------------------------------------------ residuals, PR, scaling


def convergence_plot(result: dict, path, title: str, others: dict[str, dict] | None = None) -> Path:
    """Relative forward residual of every module against time measured in ACT steps (call i of a
    module that runs k times per ACT step sits at (i + 1) / k), log scale, so runs with different
    schedules (HRM's z_L and z_H, a baseline's one state) share one axis. ``others`` adds runs."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.8))
    for label, run in {"": result, **(others or {})}.items():
        for module, data in run["modules"].items():
            per_step = data["calls"] / run["steps"]
            values = np.asarray(data["relative"])
            x = (np.arange(1, len(values) + 1) + 1) / per_step
            name = {"inner.L_level": "z_L", "inner.H_level": "z_H"}.get(module, module)
            marker = "o" if module == "inner.H_level" else "."
            axes.plot(x, values, marker=marker, linestyle="--" if label else "-", label=f"{label} {name}".strip())
    for boundary in range(1, result["steps"]):
        axes.axvline(boundary, color="grey", linewidth=0.5, linestyle=":")
    axes.set_yscale("log")
    axes.set_xlabel("ACT steps")
    axes.set_ylabel("‖z_i − z_{i−1}‖ / ‖z_{i−1}‖")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def dimensionality_plot(trained: dict, untrained: dict | None, path) -> Path:
    plt = pyplot()
    figure, (bars, curve) = plt.subplots(1, 2, figsize=(9, 3.6))
    groups = {"trained": trained, **({"untrained": untrained} if untrained else {})}
    width = 0.35
    for i, (name, result) in enumerate(groups.items()):
        bars.bar(np.arange(2) + i * width, [result["PR_H"], result["PR_L"]], width, label=name)
    bars.set_xticks(np.arange(2) + width / 2 * (len(groups) - 1), ["z_H", "z_L"])
    bars.set_ylabel("participation ratio")
    bars.set_title(f"PR_H / PR_L = {trained['ratio']:.2f} (trained)")
    bars.legend(fontsize=8)
    for name, result in groups.items():
        n = [p["trajectories"] for p in result["curve"]]
        curve.plot(n, [p["PR_H"] for p in result["curve"]], marker="o", label=f"{name} z_H")
        curve.plot(n, [p["PR_L"] for p in result["curve"]], marker="s", linestyle="--", label=f"{name} z_L")
    curve.set_xlabel("trajectories (puzzles)")
    curve.set_ylabel("participation ratio")
    curve.legend(fontsize=7)
    return save_figure(figure, path)


def scaling_plot(rows: list[dict], trained_steps: int, path) -> Path:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    act_steps = [r["act_steps"] for r in rows]
    axes.plot(act_steps, [r["exact"] for r in rows], marker="o", label="exact (all ACT steps)")
    axes.plot(act_steps, [r["token"] for r in rows], marker=".", label="token")
    axes.plot(act_steps, [r["exact_with_halting"] for r in rows], marker="x", label="exact (Q halting)")
    axes.axvline(trained_steps, color="grey", linestyle=":", label=f"trained halt_max_steps = {trained_steps}")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("ACT steps run (compute)")
    axes.set_ylabel("accuracy")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


# ------------------------------------------------------------------- halting, settling, exponents, rollouts


def halting_plot(report: dict, path) -> Path:
    """Exact accuracy after each ACT step with the Q-halting and fixed-Mmax answers, the halting steps, and
    the Q head's calibration."""
    plt = pyplot()
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [row["act_step"] for row in report["per_step"]]
    left.plot(steps, [row["exact"] for row in report["per_step"]], marker="o", label="exact after this ACT step")
    left.axhline(report["q_halting"]["exact"], color="tab:orange", label="Q-halting")
    left.axhline(report["fixed"]["exact"], color="grey", linestyle=":", label="fixed Mmax")
    left.set_xlabel("ACT step")
    left.set_ylabel("exact accuracy")
    left.legend(fontsize=8)
    middle.bar(steps, [row["halting_here"] for row in report["per_step"]], color="tab:orange")
    middle.set_xlabel("ACT step at which the Q head halts")
    middle.set_ylabel("puzzles")
    bins = report["calibration"]
    right.plot([0, 1], [0, 1], color="grey", linestyle=":")
    right.errorbar(
        [b["mean_confidence"] for b in bins],
        [b["observed"] for b in bins],
        yerr=np.abs(np.array([b["interval_95"] for b in bins]).T - [b["observed"] for b in bins]),
        marker="o",
        capsize=2,
    )
    right.set_xlabel("sigmoid(q_halt)")
    right.set_ylabel("share already exactly right")
    right.set_title("Q head calibration (every ACT step)", fontsize=9)
    return save_figure(figure, path)


def settling_plot(report: dict, path) -> Path:
    """Residual quantiles over segments for solved and failed puzzles (log scale), and the class counts."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for outcome, colour in (("solved", "tab:green"), ("failed", "tab:red")):
        curves = report["residual_quantiles"][outcome]
        if curves is None:
            continue
        segments = np.arange(1, len(curves["median"]) + 1)
        left.plot(segments, curves["median"], color=colour, label=f"{outcome} (median)")
        left.fill_between(segments, curves["q25"], curves["q75"], color=colour, alpha=0.2)
    left.axvline(report["trained_steps"], color="grey", linestyle=":", label="trained ACT steps")
    left.axhline(report["tolerance"], color="black", linestyle="--", linewidth=0.8, label="tolerance")
    left.set_yscale("log")
    left.set_xlabel("segment (ACT step)")
    left.set_ylabel("‖z_t − z_{t−1}‖ / ‖z_{t−1}‖")
    left.legend(fontsize=8)
    names = [row["class"] for row in report["classes"]]
    colours = ["tab:green", "tab:red", "tab:purple", "tab:orange"]
    right.bar(names, [row["count"] for row in report["classes"]], color=colours)
    right.set_ylabel("puzzles")
    right.tick_params(axis="x", labelsize=8, rotation=20)
    return save_figure(figure, path)


def lyapunov_plot(report: dict, path) -> Path:
    """Histograms of λ₁ for solved and failed puzzles on shared bins."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.6))
    edges = np.array(report["histogram_edges"])
    for outcome, colour in (("solved", "tab:green"), ("failed", "tab:red")):
        summary = report[outcome]
        if summary is None:
            continue
        axes.stairs(
            summary["histogram"], edges, color=colour, fill=True, alpha=0.45, label=f"{outcome} ({summary['puzzles']})"
        )
    axes.axvline(0, color="grey", linestyle=":")
    auc = report["auc_failure"]
    axes.set_title("leading FTLE per puzzle" + (f" — AUC(failure) {auc:.3f}" if auc is not None else ""), fontsize=9)
    axes.set_xlabel("λ₁ (nats per segment)")
    axes.set_ylabel("puzzles")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def rollouts_plot(curve: list[dict], path) -> Path:
    """Exact accuracy of the vote, the Q choice and the oracle against K rollouts (= compute)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    ks = [row["rollouts"] for row in curve]
    for key, label in (("vote", "majority vote"), ("q", "highest Q-halt"), ("oracle", "any rollout right")):
        axes.plot(ks, [row[key] for row in curve], marker="o", label=label, linestyle=":" if key == "oracle" else "-")
    axes.set_xscale("log", base=2)
    axes.set_xlabel(f"rollouts K (compute: K × {curve[0]['act_steps_per_puzzle']} ACT steps)")
    axes.set_ylabel("exact accuracy")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


# --------------------------------------------------------------------------------------- boards

_MAZE_WALL, _MAZE_START, _MAZE_GOAL, _MAZE_PATH = 1, 3, 4, 5  # maze tokens: "# SGo" index + 1


def _draw_board(axes, kind: str, prediction, previous, labels, inputs, side: int) -> None:
    plt = pyplot()
    colours = np.ones((side, side, 3))
    text = np.full((side, side), "", dtype=object)
    pred, label, given = (np.asarray(a).reshape(side, side) for a in (prediction, labels, inputs))
    changed = np.zeros((side, side), bool) if previous is None else np.asarray(previous).reshape(side, side) != pred
    if kind == "maze":
        path_pred, path_true = pred == _MAZE_PATH, label == _MAZE_PATH
        colours[given == _MAZE_WALL] = (0.1, 0.1, 0.1)
        colours[path_pred & path_true] = (0.35, 0.55, 0.95)
        colours[path_pred != path_true] = (0.95, 0.4, 0.4)
        text[given == _MAZE_START], text[given == _MAZE_GOAL] = "S", "G"
    else:
        correct = pred == label
        colours[correct] = (0.7, 0.92, 0.7)
        colours[~correct] = (0.97, 0.6, 0.6)
        if kind == "sudoku":
            colours[given > 1] = (0.85, 0.85, 0.85)
            text = np.vectorize(lambda t: str(int(t) - 1) if t > 1 else "")(pred).astype(object)
        else:
            text = pred.astype(str).astype(object)
    axes.imshow(colours, interpolation="nearest")
    for (i, j), value in np.ndenumerate(text):
        if value:
            axes.text(j, i, value, ha="center", va="center", fontsize=max(5, 11 - side // 4))
        if changed[i, j]:
            axes.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="orange", linewidth=2))
    axes.set_xticks([])
    axes.set_yticks([])


def _draw_frame(axes, trajectories, puzzle: int, predictions, frame: int, kind: str, side: int) -> None:
    """Board ``frame`` of one puzzle, with the cells changed since the previous frame outlined."""
    previous = predictions[frame - 1] if frame else None
    labels, inputs = trajectories.labels[puzzle].numpy(), trajectories.inputs[puzzle].numpy()
    _draw_board(axes, kind, predictions[frame], previous, labels, inputs, side)


def step_strip(trajectories, puzzle: int, kind: str, path, unit: str = "ACT step") -> Path:
    """One row of boards (the prediction after each ACT step — or each ``unit`` the frames are) above the
    halting Q values per frame."""
    plt = pyplot()
    steps = trajectories.steps
    side = round(trajectories.labels.shape[1] ** 0.5)
    predictions = trajectories.logits[:, puzzle].argmax(-1).numpy()
    figure = plt.figure(figsize=(1.9 * steps + 0.5, 4.2))
    grid = figure.add_gridspec(2, steps, height_ratios=[2.2, 1])
    for s in range(steps):
        axes = figure.add_subplot(grid[0, s])
        _draw_frame(axes, trajectories, puzzle, predictions, s, kind, side)
        right = float((predictions[s] == trajectories.labels[puzzle].numpy()).mean())
        axes.set_title(f"{unit} {s + 1}\n{right:.0%} cells right", fontsize=8)
    q = figure.add_subplot(grid[1, :])
    q.plot(range(1, steps + 1), trajectories.q_halt[:, puzzle].numpy(), marker="o", label="Q(halt)")
    q.plot(range(1, steps + 1), trajectories.q_continue[:, puzzle].numpy(), marker="s", label="Q(continue)")
    q.set_xticks(range(1, steps + 1))
    q.set_xlabel(unit)
    q.legend(fontsize=7)
    return save_figure(figure, path)


def step_gif(trajectories, puzzle: int, kind: str, path, frame_ms: int = 700, unit: str = "ACT step") -> Path:
    """An animated GIF of the prediction ACT step by ACT step (or ``unit`` by ``unit``)."""
    plt = pyplot()
    side = round(trajectories.labels.shape[1] ** 0.5)
    predictions = trajectories.logits[:, puzzle].argmax(-1).numpy()
    frames = []
    for s in range(trajectories.steps):
        figure, axes = plt.subplots(figsize=(3, 3.2))
        _draw_frame(axes, trajectories, puzzle, predictions, s, kind, side)
        axes.set_title(f"{unit} {s + 1}", fontsize=9)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        buffer.seek(0)
        frames.append(Image.open(buffer).convert("RGB"))
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path
