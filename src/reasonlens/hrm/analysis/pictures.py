"""Pictures of HRM reasoning dynamics: forward residuals, participation ratios, the prediction after
every ACT step (PNG strips and an animated GIF, with the halting Q values) and inference-time scaling.
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
