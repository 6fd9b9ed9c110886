"""Synthetic ARC: small pattern-completion tasks in the official HRM format, for CPU-sized work.

This module owns the task *families* below and :func:`build_synthetic_arc_dataset`. A task is one
family with randomly drawn rule parameters, shown through a few demonstration pairs and asked on test
pairs; every task is a puzzle with its own identifier (the learnable task token, as the real ARC
build), so the model must infer the rule from the demonstrations or store it in the task's embedding.
Grids are small (default 3×3..8×8) on a small canvas (default 10×10, ``seq_len`` 100) with the real ARC
token scheme (PAD 0, EOS 1, colours +2) and the same writer, split logic, translation and optional
dihedral/colour augmentation, all from :mod:`reasonlens.hrm.data.arc`: a fraction of the tasks play
the *evaluation* role (demonstrations in train, test pairs held out in test), the others put all their
pairs in train. :mod:`reasonlens.hrm.evaluation.arc_voting` scores predictions on it unchanged.

Families (colour 0 is the background in all of them):

* ``colour_map``: one to three colours are replaced by other colours (simultaneously); one extra
  colour stays as it is. Grid size kept.
* ``mirror_complete``: the output is symmetric left-right (``horizontal``) or top-bottom
  (``vertical``); the input shows its first half and black elsewhere.
* ``fill_enclosed``: hollow rectangles of a wall colour; every black cell not 4-connected to the
  grid border (an enclosed hole) becomes the fill colour.
* ``pattern_extend``: the output tiles a random tile with period (rows, cols) in 1..3 × 1..3 (not
  1×1); the input shows only a top-left block of at least one period, black elsewhere.
* ``gravity``: every coloured cell falls towards one side (down, up, left or right) within its
  column or row, keeping their order.
* ``shift``: the whole grid is rolled cyclically by (dr, dc), each in -2..2, not both 0.
* ``copy_recolour``: the output is the input followed (right of it or below it) by a copy whose
  coloured cells all take one colour; the output is twice as wide or tall as the input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from reasonlens.hrm.data.arc import NUM_COLOURS, ARCTask, build_tasks_dataset
from reasonlens.hrm.data.format import DatasetError
from reasonlens.utils.config import StrictConfig

FamilyName = Literal[
    "colour_map", "mirror_complete", "fill_enclosed", "pattern_extend", "gravity", "shift", "copy_recolour"
]
COLOURS = np.arange(1, NUM_COLOURS)
MAX_PAIR_TRIES = 200


def _random_grid(rng: np.random.Generator, height: int, width: int, palette, density: float) -> np.ndarray:
    cells = rng.choice(np.asarray(palette, dtype=np.uint8), size=(height, width))
    return np.where(rng.random((height, width)) < density, cells, 0).astype(np.uint8)


def _palette(rng: np.random.Generator, size: int, exclude=()) -> np.ndarray:
    return rng.choice(np.setdiff1d(COLOURS, exclude), size=size, replace=False)


# ----------------------------------------------------------------------------------------------------
# Families: rule(rng) -> parameters of one task; pair(rng, rule, lo, hi, canvas) -> (input, output) or
# None when the draw is degenerate (then it is redrawn).


def colour_map_rule(rng):
    sources = _palette(rng, int(rng.integers(1, 4)))
    lookup = np.arange(NUM_COLOURS, dtype=np.uint8)
    for colour in sources:
        lookup[colour] = rng.choice(np.setdiff1d(COLOURS, [colour]))
    keep = _palette(rng, 1, exclude=sources)
    return {"lookup": lookup, "sources": sources, "palette": np.concatenate([sources, keep])}


def colour_map_pair(rng, rule, lo, hi, canvas):
    height, width = rng.integers(lo, hi + 1, size=2)
    grid = _random_grid(rng, height, width, rule["palette"], density=0.7)
    if not np.isin(grid, rule["sources"]).any():
        return None
    return grid, rule["lookup"][grid]


def mirror_complete_rule(rng):
    return {"axis": str(rng.choice(["horizontal", "vertical"]))}


def mirror_complete_pair(rng, rule, lo, hi, canvas):
    height, width = rng.integers(lo, hi + 1, size=2)
    if rule["axis"] == "vertical":
        height, width = width, height
    half = (width + 1) // 2
    out = np.zeros((height, width), dtype=np.uint8)
    out[:, :half] = _random_grid(rng, height, half, _palette(rng, 3), density=0.7)
    out[:, width - width // 2 :] = np.fliplr(out[:, : width // 2])
    inp = out.copy()
    inp[:, half:] = 0
    if rule["axis"] == "vertical":
        inp, out = inp.T.copy(), out.T.copy()
    return (inp, out) if not np.array_equal(inp, out) else None


def fill_enclosed_rule(rng):
    wall, fill = _palette(rng, 2)
    return {"wall": wall, "fill": fill}


def _enclosed(grid: np.ndarray) -> np.ndarray:
    """Black cells not 4-connected (through black cells) to the border."""
    black = grid == 0
    outside = np.zeros_like(black)
    outside[[0, -1], :] = black[[0, -1], :]
    outside[:, [0, -1]] |= black[:, [0, -1]]
    while True:
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= black
        if np.array_equal(grown, outside):
            return black & ~outside
        outside = grown


def fill_enclosed_pair(rng, rule, lo, hi, canvas):
    height, width = rng.integers(lo, hi + 1, size=2)
    inp = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        rect_h, rect_w = rng.integers(3, height + 1), rng.integers(3, width + 1)
        top, left = rng.integers(0, height - rect_h + 1), rng.integers(0, width - rect_w + 1)
        if inp[top : top + rect_h, left : left + rect_w].any():
            continue
        inp[top : top + rect_h, left : left + rect_w] = rule["wall"]
        inp[top + 1 : top + rect_h - 1, left + 1 : left + rect_w - 1] = 0
    holes = _enclosed(inp)
    if not holes.any():
        return None
    return inp, np.where(holes, rule["fill"], inp).astype(np.uint8)


def pattern_extend_rule(rng):
    period_r, period_c = 1, 1
    while (period_r, period_c) == (1, 1):
        period_r, period_c = (int(p) for p in rng.integers(1, 4, size=2))
    return {"period": (period_r, period_c)}


def pattern_extend_pair(rng, rule, lo, hi, canvas):
    period_r, period_c = (min(p, hi - 1) for p in rule["period"])
    height = rng.integers(max(lo, period_r + 1), hi + 1)
    width = rng.integers(max(lo, period_c + 1), hi + 1)
    tile = rng.choice(_palette(rng, 3), size=(period_r, period_c)).astype(np.uint8)
    if len(np.unique(tile)) < 2:
        return None
    out = np.tile(tile, (height // period_r + 1, width // period_c + 1))[:height, :width]
    shown_r, shown_c = rng.integers(period_r, height + 1), rng.integers(period_c, width + 1)
    if (shown_r, shown_c) == (height, width):
        return None
    inp = np.zeros_like(out)
    inp[:shown_r, :shown_c] = out[:shown_r, :shown_c]
    return inp, out.copy()


GRAVITY_TURNS = {"down": 0, "right": 1, "up": 2, "left": 3}  # quarter turns that make the direction "down"


def gravity_rule(rng):
    return {"direction": str(rng.choice(list(GRAVITY_TURNS)))}


def _fall_down(grid: np.ndarray) -> np.ndarray:
    out = np.zeros_like(grid)
    for col in range(grid.shape[1]):
        cells = grid[:, col][grid[:, col] != 0]
        if cells.size:
            out[-cells.size :, col] = cells
    return out


def gravity_pair(rng, rule, lo, hi, canvas):
    height, width = rng.integers(lo, hi + 1, size=2)
    inp = _random_grid(rng, height, width, _palette(rng, int(rng.integers(1, 4))), density=0.3)
    turns = GRAVITY_TURNS[rule["direction"]]
    out = np.ascontiguousarray(np.rot90(_fall_down(np.rot90(inp, turns)), -turns))
    return (inp, out) if not np.array_equal(inp, out) else None


def shift_rule(rng):
    shift = (0, 0)
    while shift == (0, 0):
        shift = tuple(int(s) for s in rng.integers(-2, 3, size=2))
    return {"shift": shift}


def shift_pair(rng, rule, lo, hi, canvas):
    height, width = rng.integers(lo, hi + 1, size=2)
    inp = _random_grid(rng, height, width, _palette(rng, 3), density=0.4)
    out = np.roll(inp, rule["shift"], axis=(0, 1))
    return (inp, out) if not np.array_equal(inp, out) else None


def copy_recolour_rule(rng):
    return {"colour": _palette(rng, 1)[0], "side": str(rng.choice(["right", "below"]))}


def copy_recolour_pair(rng, rule, lo, hi, canvas):
    doubled_side = rng.integers(lo, min(hi, canvas // 2) + 1)
    other_side = rng.integers(lo, hi + 1)
    height, width = (other_side, doubled_side) if rule["side"] == "right" else (doubled_side, other_side)
    inp = _random_grid(rng, height, width, _palette(rng, 2, exclude=[rule["colour"]]), density=0.5)
    if not inp.any():
        return None
    copy = np.where(inp > 0, rule["colour"], 0).astype(np.uint8)
    return inp, np.concatenate([inp, copy], axis=1 if rule["side"] == "right" else 0)


FAMILIES: dict[str, tuple[Callable, Callable]] = {
    "colour_map": (colour_map_rule, colour_map_pair),
    "mirror_complete": (mirror_complete_rule, mirror_complete_pair),
    "fill_enclosed": (fill_enclosed_rule, fill_enclosed_pair),
    "pattern_extend": (pattern_extend_rule, pattern_extend_pair),
    "gravity": (gravity_rule, gravity_pair),
    "shift": (shift_rule, shift_pair),
    "copy_recolour": (copy_recolour_rule, copy_recolour_pair),
}


# ----------------------------------------------------------------------------------------------------
# Config and builder


class SyntheticARCConfig(StrictConfig):
    """A synthetic ARC set; tasks cycle through ``families`` in order."""

    out_dir: Path = Field(description="output folder (written atomically)")
    num_tasks: int = Field(default=200, ge=1, description="tasks (round-robin over the families)")
    families: list[FamilyName] = Field(
        default_factory=lambda: list(FAMILIES), description="task families, in the order the tasks cycle through"
    )
    canvas_size: int = Field(default=10, ge=3, le=30, description="canvas side (seq_len = side²)")
    min_grid_size: int = Field(default=3, ge=3, description="smallest grid side of an example")
    max_grid_size: int = Field(default=8, ge=3, description="largest grid side of an example")
    demos_per_task: int = Field(default=3, ge=1, description="demonstration pairs per task")
    tests_per_task: int = Field(default=1, ge=1, description="test pairs per task")
    evaluation_fraction: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="fraction of the tasks in the evaluation role (demos to train, tests to test)",
    )
    num_aug: int = Field(default=0, ge=0, description="augmentations per task")
    translate: bool = Field(True, description="random translation of train examples")
    seed: int = Field(0, description="random seed: the same seed gives byte-identical files")
    overwrite: bool = Field(False, description="replace the output folder if it exists")

    @model_validator(mode="after")
    def _sizes_fit(self):
        if not self.families:
            raise ValueError(f"families must name at least one of {list(FAMILIES)}")
        if not self.min_grid_size <= self.max_grid_size <= self.canvas_size:
            raise ValueError(
                f"need min_grid_size <= max_grid_size <= canvas_size, got {self.min_grid_size}, "
                f"{self.max_grid_size}, {self.canvas_size}"
            )
        if "copy_recolour" in self.families and self.canvas_size // 2 < self.min_grid_size:
            raise ValueError(
                f"copy_recolour doubles a side: canvas_size {self.canvas_size} needs min_grid_size <= "
                f"{self.canvas_size // 2}; raise the canvas or drop the family"
            )
        return self


def make_task(rng: np.random.Generator, family: str, task_id: str, role, config: SyntheticARCConfig) -> ARCTask:
    """One task of ``family``: a random rule, then distinct pairs (distinct inputs) following it."""
    make_rule, make_pair = FAMILIES[family]
    rule = make_rule(rng)
    pairs, seen_inputs = [], set()
    for _ in range(MAX_PAIR_TRIES):
        pair = make_pair(rng, rule, config.min_grid_size, config.max_grid_size, config.canvas_size)
        if pair is None:
            continue
        key = (pair[0].shape, pair[0].tobytes())
        if key in seen_inputs:
            continue
        seen_inputs.add(key)
        pairs.append((pair[0].astype(np.uint8), pair[1].astype(np.uint8)))
        if len(pairs) == config.demos_per_task + config.tests_per_task:
            break
    else:
        raise DatasetError(
            f"could not draw {config.demos_per_task + config.tests_per_task} distinct {family} pairs of size "
            f"{config.min_grid_size}..{config.max_grid_size}; allow larger grids or fewer pairs"
        )
    return ARCTask(task_id, role, pairs[: config.demos_per_task], pairs[config.demos_per_task :])


def generate_synthetic_tasks(config: SyntheticARCConfig, rng: np.random.Generator) -> list[ARCTask]:
    num_eval = max(1, round(config.evaluation_fraction * config.num_tasks))
    evaluation = set(rng.choice(config.num_tasks, size=num_eval, replace=False).tolist())
    tasks = []
    for index in range(config.num_tasks):
        family = config.families[index % len(config.families)]
        role = "evaluation" if index in evaluation else "train"
        tasks.append(make_task(rng, family, f"{family}-{index:04d}", role, config))
    return tasks


def build_synthetic_arc_dataset(config: SyntheticARCConfig) -> Path:
    """Generate the tasks and write them in the official format (+ ``test_puzzles.json``, ``build.json``)."""
    rng = np.random.default_rng(config.seed)
    tasks = generate_synthetic_tasks(config, rng)
    build_info = {
        "builder": "reasonlens.hrm.data.arc_synthetic",
        "config": config.model_dump(mode="json", exclude={"out_dir", "overwrite"}),
        "families": {family: sum(t.task_id.startswith(f"{family}-") for t in tasks) for family in config.families},
    }
    return build_tasks_dataset(
        tasks,
        config.out_dir,
        num_aug=config.num_aug,
        rng=rng,
        translate=config.translate,
        canvas_size=config.canvas_size,
        overwrite=config.overwrite,
        build_info=build_info,
    )
