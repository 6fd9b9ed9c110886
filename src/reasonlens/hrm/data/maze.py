"""Maze datasets for HRM (Maze-Hard): the official encoding, a maze generator, shortest paths and path checks,
the official CSV format, and :func:`build_maze_dataset`, which writes the official on-disk format (:mod:`.format`).

**Encoding** (sapientinc/HRM ``dataset/build_maze_dataset.py``): a maze is a row-major string over the charset
``"# SGo"``; token = charset index + 1, so PAD = 0, ``#`` wall = 1, ``' '`` free = 2, ``S`` start = 3, ``G`` goal
= 4, ``o`` path = 5 (labels only); ``vocab_size = 6``, ``seq_len = H·W`` (900 for 30×30), ``ignore_label_id = 0``
(every cell is scored), one puzzle identifier (0, ``"<blank>"``), one example per puzzle. The input is the maze
with S and G; the label is the same grid with the interior cells of a shortest path (S and G excluded) turned
into ``o``. Grids are handled here as *token grids*: ``(H, W)`` uint8 arrays of these ids, sides 2..64
(generated mazes 5..64; a row is one uint64 bit mask in the batched BFS).

**Path length** is the number of cells on a shortest path, S and G included (the length of Lehnert et al.'s
plan, ``moves + 1``). The official data keeps HRM's "difficulty > 110"; we read it as this length and keep
``path_length >= 111`` (:data:`HARD_MIN_PATH_LENGTH`).

**Generator** (:func:`generate_maze`, :func:`generate_mazes`), our own code after the procedure of Lehnert et al.,
"Beyond A*" (arXiv 2402.14083, ``searchformer/maze.py``): the number of walls is uniform in
``[⌊n/10⌋·3, ⌊n/10⌋·5]`` of the ``n = H·W`` cells, the walls sit on uniformly random cells, S and G are distinct
uniformly random free cells, and a maze is kept only if G is reachable with ``path_length >= min_path_length``
(Lehnert: ``max(H, W)``; HRM's Maze-Hard adds ``> 110`` on 30×30). Long paths are rare (about 1.6e-5 of the
draws for Maze-Hard), so instead of drawing G and rejecting, one bit-parallel BFS from S (rows as uint64 bit
masks, a batch of mazes per numpy op) finds all ``k`` goals that would be accepted; the draw (walls, S) then
yields ``⌊x⌋`` or ``⌈x⌉`` mazes (mean ``x = M·k/(free − 1)``) with distinct goals drawn uniformly among the
``k``. The expected number of mazes per (walls, S, G) is ``M/(free − 1)`` times its probability under the
plain procedure, so the mazes follow the same distribution, ``M`` times faster (:func:`default_oversampling`:
4 for very long paths such as Maze-Hard, else 1); ``x > 1``, two mazes sharing walls and S, is rare and counted.

**Shortest path and tie-break** (:func:`solve`): BFS distances to G, then a walk from S that always steps to the
first neighbour one step closer to G in the order up, down, left, right (row − 1, row + 1, column − 1,
column + 1). This gives the lexicographically smallest move sequence (U < D < L < R) among all shortest
paths. Mazes often have several shortest paths (:func:`count_shortest_paths`) and the official labels break
ties their own way (the augmented labels are rotated, too), so besides the official metric, exact match with
the label, :func:`is_valid_optimal_path` checks the paper's criterion: the ``o`` cells form a connected path of
free cells from S to G of optimal length and nothing else changed (:func:`path_accuracy` reports both).

**Official CSV** (:func:`read_maze_csv`): header ``source,q,a,rating``, ``q`` the maze and ``a`` its solution as
strings of ``H·W`` characters (the side is the square root of the length), ``rating`` unused (we write the path
length). :func:`build_maze_dataset` builds from these files or from the generator; ``aug`` adds the 8 dihedral
variants of each train maze as one group (official ``--aug``, default off: "data augmentation is disabled for
Maze"); test is never augmented.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from reasonlens.hrm.config import StrictConfig
from reasonlens.hrm.data.format import (
    BLANK_IDENTIFIER,
    DatasetError,
    SplitBuilder,
    dihedral_transform,
    make_metadata,
    write_dataset,
)
from reasonlens.utils.io import atomic_write

logger = logging.getLogger(__name__)

CHARSET = "# SGo"
PAD, WALL, FREE, START, GOAL, PATH = range(6)
VOCAB_SIZE = len(CHARSET) + 1
CSV_HEADER = ("source", "q", "a", "rating")

MIN_GENERATED_SIDE = 5
MAX_SIDE = 64  # one uint64 bit mask per row in the batched BFS
MIN_SIDE = 2
HARD_SIZE = 30
HARD_MIN_PATH_LENGTH = 111  # HRM's Maze-Hard: shortest path > 110
LONG_PATH_OVERSAMPLING = 4
NUM_DIHEDRAL = 8
TIE_BREAK = "from S, step to the first neighbour one step closer to G in the order up, down, left, right"

_RENDER_CHARS = "?#.SGo"  # free cells as '.' so they stay visible
_ID_TO_CHAR = np.array(list("?" + CHARSET))
_CHAR_TO_ID = np.zeros(128, np.uint8)
_CHAR_TO_ID[[ord(ch) for ch in CHARSET]] = np.arange(1, len(CHARSET) + 1)
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: the tie-break order
_ONE = np.uint64(1)
_FIRST_BATCH, _MAX_BATCH = 256, 4096
_CHUNK_MAZES = 50  # mazes per generation job of the builder (fixed: the output must not depend on workers)


# ----------------------------------------------------------------------------------------------------------
# encoding


def _square_side(length: int) -> int:
    side = math.isqrt(length)
    if length == 0 or side * side != length or not MIN_SIDE <= side <= MAX_SIDE:
        raise DatasetError(
            f"{length} cells is not a square maze: a maze holds H·W cells with H = W between {MIN_SIDE} and "
            f"{MAX_SIDE} (900 for 30×30)"
        )
    return side


def string_to_tokens(text: str) -> np.ndarray:
    """Row-major maze string over ``"# SGo"`` -> flat uint8 token ids."""
    if not isinstance(text, str):
        raise DatasetError(f"a maze string must be a str, got {type(text).__name__}")
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")
    tokens = _CHAR_TO_ID[np.minimum(codes, 127)]
    bad = np.flatnonzero(tokens == 0)
    if bad.size:
        raise DatasetError(
            f"invalid character {text[bad[0]]!r} at position {bad[0]}; allowed: '#' wall, ' ' free, 'S' start, "
            "'G' goal, 'o' path"
        )
    return tokens


def tokens_to_grid(tokens, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Token ids (flat or 2-D) -> ``(H, W)`` uint8 token grid; ``shape`` defaults to the square of the length."""
    array = np.asarray(tokens)
    if array.dtype.kind not in "iu":
        raise DatasetError(f"maze tokens must be integers, got dtype {array.dtype}")
    if shape is None:
        shape = array.shape if array.ndim == 2 else (_square_side(array.size),) * 2
    if array.size != shape[0] * shape[1] or min(shape) < 1:
        raise DatasetError(f"{array.size} maze tokens do not fill a {shape[0]}×{shape[1]} grid")
    outside = array[(array < WALL) | (array > PATH)]
    if outside.size:
        raise DatasetError(f"maze token ids must lie in {WALL}..{PATH} ('#', ' ', 'S', 'G', 'o'), found {outside[0]}")
    return array.reshape(shape).astype(np.uint8)


def encode(maze, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A maze string, a list of row strings, a char grid (array of 1-char strings) or token ids -> token grid."""
    if isinstance(maze, str):
        return tokens_to_grid(string_to_tokens(maze), shape)
    if isinstance(maze, (list, tuple)) and maze and all(isinstance(row, str) for row in maze):
        if len({len(row) for row in maze}) != 1:
            raise DatasetError("the rows of a maze must all have the same length")
        return tokens_to_grid(string_to_tokens("".join(maze)), shape or (len(maze), len(maze[0])))
    array = np.asarray(maze)
    if array.dtype.kind == "U":
        if array.size and np.char.str_len(array).max() != 1:
            raise DatasetError("a char grid must hold one character per cell")
        text = "".join(array.ravel().tolist())
        return tokens_to_grid(string_to_tokens(text), shape or (array.shape if array.ndim == 2 else None))
    return tokens_to_grid(array, shape)


def _is_text(grid) -> bool:
    """A maze string, a list of row strings or a char grid (as opposed to token ids)."""
    if isinstance(grid, str) or (isinstance(grid, np.ndarray) and grid.dtype.kind == "U"):
        return True
    return isinstance(grid, (list, tuple)) and bool(grid) and all(isinstance(row, str) for row in grid)


def decode(grid, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Token grid (or anything :func:`encode` takes) -> ``(H, W)`` char grid (numpy array of 1-char strings)."""
    return _ID_TO_CHAR[encode(grid, shape)]


def maze_to_string(grid, shape: tuple[int, int] | None = None) -> str:
    """Token grid or char grid -> the row-major string of the official CSV."""
    return "".join(decode(grid, shape).ravel().tolist())


def render(grid, shape: tuple[int, int] | None = None) -> str:
    """Text picture of a token grid, token array or maze text, for debugging: one line per row, ``#`` wall,
    ``.`` free, ``S``, ``G``, ``o`` path, ``?`` for any other token (PAD or a model's stray id), so a raw model
    output renders too."""
    array = encode(grid, shape) if _is_text(grid) else np.asarray(grid)
    if shape is not None or array.ndim != 2:
        array = array.reshape(shape or (_square_side(array.size),) * 2)
    ids = np.where((array >= WALL) & (array <= PATH), array, PAD).astype(np.intp)
    return "\n".join("".join(_RENDER_CHARS[i] for i in row) for row in ids)


def _check_maze(grid: np.ndarray, what: str = "maze") -> np.ndarray:
    """A token grid with only '#', ' ', 'S', 'G' and exactly one S and one G."""
    if (grid == PATH).any():
        raise DatasetError(f"{what} contains path cells 'o'; a maze holds only '#', ' ', 'S', 'G'")
    starts, goals = int((grid == START).sum()), int((grid == GOAL).sum())
    if starts != 1 or goals != 1:
        raise DatasetError(f"{what} must contain exactly one S and one G, found {starts} S and {goals} G")
    return grid


def as_maze(maze) -> np.ndarray:
    """:func:`encode` plus the checks of a maze: no ``o`` cells, exactly one S and one G."""
    return _check_maze(encode(maze))


# ----------------------------------------------------------------------------------------------------------
# shortest paths (plain BFS on one maze)


def _distance_field(passable: np.ndarray, source: int) -> list[int]:
    """BFS moves from flat cell ``source`` to every cell (-1: unreachable), 4-neighbourhood."""
    height, width = passable.shape
    open_cells = passable.ravel().tolist()
    distance = [-1] * (height * width)
    distance[source] = 0
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        row, col = divmod(cell, width)
        step = distance[cell] + 1
        for neighbour, inside in (
            (cell - width, row > 0),
            (cell + width, row < height - 1),
            (cell - 1, col > 0),
            (cell + 1, col < width - 1),
        ):
            if inside and open_cells[neighbour] and distance[neighbour] < 0:
                distance[neighbour] = step
                queue.append(neighbour)
    return distance


def _endpoints(grid: np.ndarray) -> tuple[int, int]:
    return int(np.flatnonzero(grid == START)[0]), int(np.flatnonzero(grid == GOAL)[0])


def shortest_path(maze) -> list[tuple[int, int]] | None:
    """The tie-broken shortest path (:data:`TIE_BREAK`) as (row, col) cells from S to G, or None if G is not
    reachable."""
    grid = as_maze(maze)
    height, width = grid.shape
    start, goal = _endpoints(grid)
    to_goal = _distance_field(grid != WALL, goal)
    if to_goal[start] < 0:
        return None
    cell, path = start, [divmod(start, width)]
    while cell != goal:
        row, col = divmod(cell, width)
        for d_row, d_col in _MOVES:
            r, c = row + d_row, col + d_col
            if 0 <= r < height and 0 <= c < width and to_goal[r * width + c] == to_goal[cell] - 1:
                cell = r * width + c
                break
        path.append(divmod(cell, width))
    return path


def solve(maze) -> np.ndarray:
    """The label: the maze with the interior of the tie-broken shortest path marked ``o`` (DatasetError if G is
    not reachable)."""
    grid = as_maze(maze)
    path = shortest_path(grid)
    if path is None:
        raise DatasetError("the maze has no path from S to G")
    solution = grid.copy()
    for row, col in path[1:-1]:
        solution[row, col] = PATH
    return solution


def path_length(maze) -> int | None:
    """Cells on a shortest path from S to G, S and G included (moves + 1); None if G is not reachable."""
    grid = as_maze(maze)
    start, goal = _endpoints(grid)
    moves = _distance_field(grid != WALL, start)[goal]
    return moves + 1 if moves >= 0 else None


def count_shortest_paths(maze) -> int:
    """Number of distinct shortest paths from S to G (0 if G is not reachable)."""
    grid = as_maze(maze)
    width = grid.shape[1]
    start, goal = _endpoints(grid)
    from_start = _distance_field(grid != WALL, start)
    if from_start[goal] < 0:
        return 0
    counts = [0] * grid.size
    counts[start] = 1
    for cell in sorted((c for c, d in enumerate(from_start) if d > 0), key=from_start.__getitem__):
        row, col = divmod(cell, width)
        for d_row, d_col in _MOVES:
            r, c = row + d_row, col + d_col
            if 0 <= r < grid.shape[0] and 0 <= c < width and from_start[r * width + c] == from_start[cell] - 1:
                counts[cell] += counts[r * width + c]
    return counts[goal]


def _prediction_grid(predicted, shape: tuple[int, int]) -> np.ndarray | str:
    """A prediction as an int grid of ``shape``, or why it cannot be one."""
    if _is_text(predicted):
        try:
            return encode(predicted, shape).astype(np.int64)
        except DatasetError as err:
            return f"the prediction is not a maze grid: {err}"
    array = np.asarray(predicted)
    if array.dtype.kind not in "iub":
        return f"the prediction is not a grid of token ids (dtype {array.dtype})"
    if array.size != shape[0] * shape[1]:
        return f"the prediction has {array.size} cells but the maze has {shape[0] * shape[1]}"
    return array.reshape(shape).astype(np.int64)


def path_problem(maze, predicted) -> str | None:
    """Why ``predicted`` is not a valid optimal solution of ``maze`` (None when it is). Valid optimal: every
    cell equals the maze except free cells marked ``o``; the ``o`` cells with S and G form a connected path of
    optimal length (then it is a shortest path). ``maze`` must be a valid maze; ``predicted`` may be anything."""
    grid = as_maze(maze)
    pred = _prediction_grid(predicted, grid.shape)
    if isinstance(pred, str):
        return pred
    marked = pred == PATH
    changed = np.where(marked, grid != FREE, pred != grid)
    if changed.any():
        row, col = np.argwhere(changed)[0]
        value = int(pred[row, col])
        shown = repr(CHARSET[value - 1]) if WALL <= value <= PATH else f"token {value}"
        return (
            f"cell ({row}, {col}) is {shown} but the maze has {CHARSET[grid[row, col] - 1]!r} "
            "(only free cells may become 'o')"
        )
    start, goal = _endpoints(grid)
    optimal = _distance_field(grid != WALL, start)[goal]
    if optimal < 0:
        return "the maze has no path from S to G"
    if int(marked.sum()) != optimal - 1:
        return f"{int(marked.sum())} cells are marked 'o' but a shortest path has {optimal - 1} between S and G"
    if _distance_field(marked | (grid == START) | (grid == GOAL), start)[goal] != optimal:
        return "the 'o' cells do not connect S to G"
    return None


def is_valid_optimal_path(maze, predicted) -> bool:
    """The paper's criterion: ``predicted`` marks a valid shortest S–G path with ``o`` and changes nothing else."""
    return path_problem(maze, predicted) is None


# ----------------------------------------------------------------------------------------------------------
# batched bit-parallel BFS: each row of each maze is one uint64 bit mask (bit c = column c)


def _mask_to_bits(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> (..., H) uint64."""
    packed = np.packbits(mask, axis=-1, bitorder="little")
    padded = np.zeros((*mask.shape[:-1], 8), np.uint8)
    padded[..., : packed.shape[-1]] = packed
    return padded.view("<u8")[..., 0].astype(np.uint64)


def _bits_to_mask(bits: np.ndarray, width: int) -> np.ndarray:
    """(..., H) uint64 -> (..., H, W) bool."""
    as_bytes = np.ascontiguousarray(bits.astype("<u8")).view(np.uint8).reshape(*bits.shape, 8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :width].astype(bool)


def _cell_bits(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    bits = np.zeros((len(cells), height), np.uint64)
    bits[np.arange(len(cells)), cells // width] = _ONE << (cells % width).astype(np.uint64)
    return bits


def _neighbours(front: np.ndarray) -> np.ndarray:
    """Cells next to the front (may include columns beyond the width: callers mask with the open cells)."""
    spread = (front << _ONE) | (front >> _ONE)
    spread[:, 1:] |= front[:, :-1]
    spread[:, :-1] |= front[:, 1:]
    return spread


def _popcount(bits: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)
    return np.unpackbits(np.ascontiguousarray(bits.astype("<u8")).view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)


def _goal_distances(passable: np.ndarray, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Moves from ``starts`` to ``goals`` (flat cells) through ``passable`` (N, H, W) for a batch; -1: none."""
    _, height, width = passable.shape
    distance = np.where(starts == goals, 0, -1).astype(np.int64)
    active = np.flatnonzero(starts != goals)
    front = _cell_bits(starts[active], height, width)
    target = _cell_bits(goals[active], height, width)
    unvisited = _mask_to_bits(passable[active]) & ~front
    depth = 0
    while active.size:
        depth += 1
        front = _neighbours(front) & unvisited
        unvisited ^= front
        reached = (front & target).any(axis=1)
        distance[active[reached]] = depth
        alive = front.any(axis=1) & ~reached
        if not alive.all():
            active, front, unvisited, target = active[alive], front[alive], unvisited[alive], target[alive]
    return distance


def _valid_optimal_batch(mazes: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """:func:`is_valid_optimal_path` for (N, H, W) checked mazes and predictions of the same shape."""
    count = len(mazes)
    if count == 0:
        return np.zeros(0, bool)
    flat = mazes.reshape(count, -1)
    starts, goals = np.argmax(flat == START, axis=1), np.argmax(flat == GOAL, axis=1)
    marked = predictions == PATH
    unchanged = ~np.where(marked, mazes != FREE, predictions != mazes).any(axis=(1, 2))
    optimal = _goal_distances(mazes != WALL, starts, goals)
    along_marks = _goal_distances(marked | (mazes == START) | (mazes == GOAL), starts, goals)
    return unchanged & (optimal > 0) & (marked.sum(axis=(1, 2)) == optimal - 1) & (along_marks == optimal)


def path_accuracy(inputs, labels, predictions) -> dict[str, float]:
    """Both Maze metrics over a batch of token arrays (N, H·W) or grids (N, H, W): ``exact`` (the official one:
    the whole prediction equals the label) and ``valid_optimal`` (:func:`is_valid_optimal_path`, fair to
    other shortest paths than the label's)."""
    inputs, labels, predictions = (np.asarray(a) for a in (inputs, labels, predictions))
    count = len(inputs)
    if not inputs.shape == labels.shape == predictions.shape or count == 0:
        raise ValueError(
            f"inputs, labels and predictions must share one non-empty shape, got {inputs.shape}, {labels.shape}, "
            f"{predictions.shape}"
        )
    mazes = np.stack([_check_maze(tokens_to_grid(row), f"maze {i}") for i, row in enumerate(inputs.reshape(count, -1))])
    side = mazes.shape[1]
    preds = predictions.reshape(count, side, side).astype(np.int64)
    exact = (preds == labels.reshape(count, side, side)).all(axis=(1, 2))
    return {"exact": float(exact.mean()), "valid_optimal": float(_valid_optimal_batch(mazes, preds).mean())}


# ----------------------------------------------------------------------------------------------------------
# generator


@dataclass
class GenerationStats:
    """Counts of a generation run. ``attempts`` are (walls, S) draws; ``plain_acceptance`` estimates the
    acceptance rate of plain rejection sampling (draw G too, keep if long enough) from the same draws."""

    attempts: int = 0
    accepted: int = 0
    plain_acceptance_sum: float = 0.0
    shared_layouts: int = 0  # mazes beyond the first from one (walls, S) draw

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.attempts, 1)

    @property
    def plain_acceptance(self) -> float:
        return self.plain_acceptance_sum / max(self.attempts, 1)

    def add(self, other: GenerationStats) -> None:
        self.attempts += other.attempts
        self.accepted += other.accepted
        self.plain_acceptance_sum += other.plain_acceptance_sum
        self.shared_layouts += other.shared_layouts


def maze_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` or ``(height, width)`` -> (height, width), each side in [5, 64]."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        height = width = int(size)
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        height, width = int(size[0]), int(size[1])
    else:
        raise ValueError(f"maze size must be an int or a (height, width) pair, got {size!r}")
    if not (MIN_GENERATED_SIDE <= height <= MAX_SIDE and MIN_GENERATED_SIDE <= width <= MAX_SIDE):
        raise ValueError(
            f"maze sides must lie in [{MIN_GENERATED_SIDE}, {MAX_SIDE}] (64 = one machine word per row), "
            f"got {height}×{width}"
        )
    return height, width


def wall_count_range(height: int, width: int) -> tuple[int, int]:
    """Lehnert et al.: the number of walls is uniform in [⌊n/10⌋·3, ⌊n/10⌋·5] (inclusive) of n cells."""
    tenth = height * width // 10
    return tenth * 3, tenth * 5


def _resolve_min_path_length(height: int, width: int, min_path_length: int | None) -> int:
    if min_path_length is None:
        return max(height, width)
    longest = height * width - wall_count_range(height, width)[0]
    if isinstance(min_path_length, bool) or not isinstance(min_path_length, (int, np.integer)):
        raise ValueError(f"min_path_length must be an int, got {min_path_length!r}")
    if not 2 <= min_path_length <= longest:
        raise ValueError(
            f"min_path_length must lie in [2, {longest}] for a {height}×{width} maze (cells on the path, S and G "
            f"included; at most the free cells), got {min_path_length}"
        )
    return int(min_path_length)


def default_oversampling(height: int, width: int, min_path_length: int) -> int:
    """``M`` of the generator: :data:`LONG_PATH_OVERSAMPLING` for very long paths (more than 1.5·(H + W) cells,
    e.g. Maze-Hard), where few goals are far enough from S and two mazes from one (walls, S) draw are rare
    (measured: 7 in 2005 Maze-Hard mazes; about 1 % at 20×20 with 60 cells); 1 (plain rejection, no sharing)
    where long paths are common enough that plain rejection is fast."""
    return LONG_PATH_OVERSAMPLING if 2 * min_path_length > 3 * (height + width) else 1


def _sample_batch(
    rng: np.random.Generator,
    height: int,
    width: int,
    min_path_length: int,
    oversampling: int,
    batch: int,
    stats: GenerationStats,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One batch of (walls, S) draws -> the accepted (maze, solution) token grids, in draw order."""
    cells = height * width
    low, high = wall_count_range(height, width)
    wall_counts = rng.integers(low, high, size=batch, endpoint=True)
    keys = rng.random((batch, cells), dtype=np.float32)
    yield_draws = rng.random(batch)
    # the wall_counts smallest keys are the walls and the next one is S: a uniform subset and a uniform free
    # cell. float32 keys can tie at those boundaries; such rows are dropped (a symmetric event: no bias).
    ordered = np.sort(keys, axis=1)
    rows = np.arange(batch)
    last_wall_key, start_key = ordered[rows, wall_counts - 1], ordered[rows, wall_counts]
    distinct = (last_wall_key < start_key) & (start_key < ordered[rows, wall_counts + 1])
    is_wall = keys <= last_wall_key[:, None]
    starts = np.argmax(keys == start_key[:, None], axis=1)

    active = np.flatnonzero(distinct)
    front = _cell_bits(starts[active], height, width)
    unvisited = _mask_to_bits(~is_wall[active].reshape(-1, height, width)) & ~front
    far = np.zeros((batch, height), np.uint64)  # cells whose shortest path from S is long enough
    depth = 0  # moves from S: a cell at depth d ends a path of d + 1 cells
    while active.size:
        depth += 1
        front = _neighbours(front) & unvisited
        unvisited ^= front
        if depth + 1 >= min_path_length:
            far[active] |= front
        if depth % 4 == 0:
            alive = front.any(axis=1)
            if not alive.all():
                active, front, unvisited = active[alive], front[alive], unvisited[alive]

    far_counts = _popcount(far)
    free_counts = cells - wall_counts
    plain = far_counts / (free_counts - 1)
    stats.attempts += int(distinct.sum())
    stats.plain_acceptance_sum += float(plain[distinct].sum())
    expected = oversampling * plain
    accepted = []
    for row in np.flatnonzero(distinct & (far_counts > 0)):
        count = int(expected[row]) + int(yield_draws[row] < expected[row] % 1)
        if count == 0:
            continue
        far_cells = np.flatnonzero(_bits_to_mask(far[row], width))
        for goal in rng.choice(far_cells, size=min(count, far_cells.size), replace=False):
            maze = np.where(is_wall[row], WALL, FREE).astype(np.uint8)
            maze[starts[row]], maze[goal] = START, GOAL
            maze = maze.reshape(height, width)
            accepted.append((maze, solve(maze)))
        stats.accepted += min(count, far_cells.size)
        stats.shared_layouts += min(count, far_cells.size) - 1
    return accepted


def generate_mazes(
    count: int,
    size: int | tuple[int, int],
    rng: np.random.Generator | int,
    min_path_length: int | None = None,
    max_attempts: int = 50_000_000,
    oversampling: int | None = None,
) -> tuple[np.ndarray, np.ndarray, GenerationStats]:
    """``count`` mazes (Lehnert et al. with ``path_length >= min_path_length``, default ``max(H, W)``) and
    their tie-broken solutions as (count, H, W) uint8 token grids, plus the generation counts. Draws come in
    batches of a fixed schedule, so a generator seeded alike gives the same mazes, and asking for fewer gives
    a prefix. ``oversampling`` is ``M`` of the module docstring (default :func:`default_oversampling`); it
    changes the speed, not the distribution. Raises ValueError after ``max_attempts`` (walls, S) draws
    without enough mazes."""
    height, width = maze_shape(size)
    min_path_length = _resolve_min_path_length(height, width, min_path_length)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if oversampling is None:
        oversampling = default_oversampling(height, width, min_path_length)
    elif isinstance(oversampling, bool) or not isinstance(oversampling, (int, np.integer)) or oversampling < 1:
        raise ValueError(f"oversampling must be a positive int, got {oversampling!r}")
    rng = np.random.default_rng(rng)
    stats, pairs, batch = GenerationStats(), [], _FIRST_BATCH
    while len(pairs) < count:
        if stats.attempts >= max_attempts:
            raise ValueError(
                f"only {len(pairs)} of {count} {height}×{width} mazes with a shortest path of at least "
                f"{min_path_length} cells after {stats.attempts} draws; lower min_path_length"
            )
        pairs.extend(_sample_batch(rng, height, width, min_path_length, oversampling, batch, stats))
        batch = min(2 * batch, _MAX_BATCH)
    pairs = pairs[:count]
    shape = (0, height, width)
    mazes = np.stack([maze for maze, _ in pairs]) if pairs else np.zeros(shape, np.uint8)
    solutions = np.stack([solution for _, solution in pairs]) if pairs else np.zeros(shape, np.uint8)
    return mazes, solutions, stats


def generate_maze(
    size: int | tuple[int, int], rng: np.random.Generator | int, min_path_length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One maze and its tie-broken solution, (H, W) uint8 token grids; see :func:`generate_mazes`."""
    mazes, solutions, _ = generate_mazes(1, size, rng, min_path_length)
    return mazes[0], solutions[0]


# ----------------------------------------------------------------------------------------------------------
# official CSV


def parse_maze_csv(text: str, name: str = "<csv>") -> tuple[np.ndarray, np.ndarray]:
    """Mazes and solutions (N, H, H) uint8 from the text of an official CSV (``source,q,a,rating``). Every row is
    checked; errors name ``name:line``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if row:
                rows.append((reader.line_num, row))
    except csv.Error as err:
        raise DatasetError(f"{name}:{reader.line_num}: not valid CSV: {err}") from None
    if not rows:
        raise DatasetError(f"{name}: empty file; expected the header {','.join(CSV_HEADER)} and one maze per row")
    line, header = rows[0]
    if tuple(field.strip() for field in header) != CSV_HEADER:
        raise DatasetError(f"{name}:{line}: header is {','.join(header)!r}, expected {','.join(CSV_HEADER)}")
    if len(rows) == 1:
        raise DatasetError(f"{name}: no mazes after the header")

    side, mazes, solutions, lines = None, [], [], []
    for line, row in rows[1:]:
        where = f"{name}:{line}"
        if len(row) != len(CSV_HEADER):
            raise DatasetError(f"{where}: expected 4 fields ({','.join(CSV_HEADER)}), found {len(row)}")
        _, q, a, _ = row
        try:
            row_side = _square_side(len(q))
        except DatasetError as err:
            raise DatasetError(f"{where}: q: {err}") from None
        if side is not None and row_side != side:
            raise DatasetError(f"{where}: q is a {row_side}×{row_side} maze but the rows above are {side}×{side}")
        side = row_side
        if len(a) != len(q):
            raise DatasetError(f"{where}: a has {len(a)} characters but q has {len(q)}")
        grids = []
        for field, text in (("q", q), ("a", a)):
            try:
                grids.append(tokens_to_grid(string_to_tokens(text), (side, side)))
            except DatasetError as err:
                raise DatasetError(f"{where}: {field}: {err}") from None
        maze, solution = grids
        try:
            _check_maze(maze, "q")
        except DatasetError as err:
            raise DatasetError(f"{where}: {err}") from None
        mazes.append(maze)
        solutions.append(solution)
        lines.append(line)

    mazes, solutions = np.stack(mazes), np.stack(solutions)
    bad = np.flatnonzero(~_valid_optimal_batch(mazes, solutions))
    if bad.size:
        first = bad[0]
        more = f" (and {bad.size - 1} more rows)" if bad.size > 1 else ""
        raise DatasetError(
            f"{name}:{lines[first]}: a is not a valid shortest path for q: "
            f"{path_problem(mazes[first], solutions[first])}{more}"
        )
    return mazes, solutions


def read_maze_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Mazes and solutions (N, H, H) uint8 from an official CSV file (e.g. HF ``sapientinc/maze-30x30-hard-1k``
    ``train.csv``); see :func:`parse_maze_csv`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: maze CSV not found (expected a file with the header {','.join(CSV_HEADER)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err})") from None
    return parse_maze_csv(text, str(path))


def write_maze_csv(path: str | os.PathLike, mazes, solutions, source: str = "reasonlens") -> Path:
    """Write mazes and solutions (token grids) as an official CSV; ``rating`` holds the path length."""
    mazes, solutions = np.asarray(mazes), np.asarray(solutions)
    if mazes.shape != solutions.shape or mazes.ndim != 3:
        raise ValueError(
            f"mazes and solutions must be (N, H, W) arrays of one shape, got {mazes.shape} and {solutions.shape}"
        )
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for maze, solution in zip(mazes, solutions):
        writer.writerow([source, maze_to_string(maze), maze_to_string(solution), int((solution == PATH).sum()) + 2])
    with atomic_write(path) as file:
        file.write(buffer.getvalue())
    return path


# ----------------------------------------------------------------------------------------------------------
# builder


class MazeBuildConfig(StrictConfig):
    """What :func:`build_maze_dataset` builds. ``generate``: ``train_size`` + ``test_size`` new mazes,
    ``min_path_length`` (cells on the shortest path, S and G included) defaulting to 111 on 30×30 (HRM's
    Maze-Hard: > 110) and ``max(H, W)`` otherwise (Lehnert et al.). ``csv``: the official files ``train_csv``
    and ``test_csv`` (side read from them), ``train_size``/``test_size`` rows of each (a seeded subsample when a
    file holds more, None for all)."""

    out_dir: Path
    source: Literal["generate", "csv"] = "generate"
    size: int | None = Field(None, description="maze side; generate: default 30; csv: read from the files")
    train_size: int | None = Field(1000, ge=1, description="train mazes before augmentation; csv: None for all")
    test_size: int | None = Field(1000, ge=1)
    min_path_length: int | None = Field(None, ge=2, description="generate: min cells on the shortest path")
    aug: bool = Field(False, description="add the 8 dihedral variants of each train maze as its group")
    train_csv: Path | None = None
    test_csv: Path | None = None
    seed: int = Field(0, ge=0)
    workers: int | None = Field(None, ge=1, description="generate: processes (default: CPU cores); same output")
    overwrite: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.source == "generate":
            if self.size is not None:
                maze_shape(self.size)
            if self.train_size is None or self.test_size is None:
                raise ValueError("source 'generate' needs train_size and test_size")
            given = [f for f in ("train_csv", "test_csv") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} are read only with source 'csv'")
            _resolve_min_path_length(self.side, self.side, self.resolved_min_path_length)
        else:
            missing = [f for f in ("train_csv", "test_csv") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"source 'csv' needs {' and '.join(missing)}")
            if self.min_path_length is not None:
                raise ValueError("min_path_length filters generated mazes only; the CSV files are kept as they are")
        return self

    @property
    def side(self) -> int:
        return HARD_SIZE if self.size is None else self.size

    @property
    def resolved_min_path_length(self) -> int | None:
        if self.source == "csv":
            return None
        if self.min_path_length is not None:
            return self.min_path_length
        return HARD_MIN_PATH_LENGTH if self.side == HARD_SIZE else self.side


def _dihedral_key(maze: np.ndarray) -> bytes:
    """The same bytes for a maze and its 8 dihedral variants (dedupes train/test across augmentation)."""
    return min(np.ascontiguousarray(dihedral_transform(maze, tid)).tobytes() for tid in range(NUM_DIHEDRAL))


def _generate_chunk(job: tuple[int, int, int, int, int, int]) -> tuple[np.ndarray, np.ndarray, GenerationStats]:
    side, min_path_length, seed, split_index, chunk_index, count = job
    rng = np.random.default_rng([seed, split_index, chunk_index])
    return generate_mazes(count, side, rng, min_path_length)


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool(workers: int, jobs: int):
    if workers <= 1 or jobs <= 1:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=min(workers, jobs), mp_context=multiprocessing.get_context(method))


def _generate_split(
    config: MazeBuildConfig, split_index: int, count: int, taken: set[bytes], stats: GenerationStats
) -> tuple[np.ndarray, np.ndarray, int]:
    """``count`` mazes not in ``taken`` (dihedral keys, updated), from jobs seeded (seed, split, chunk) and
    merged in chunk order, so the result does not depend on ``workers``. Returns mazes, solutions, duplicates."""
    side, min_path_length = config.side, config.resolved_min_path_length
    workers = config.workers or _available_cpus()
    mazes, solutions, duplicates, next_chunk = [], [], 0, 0
    max_chunks = 20 + 4 * math.ceil(count / _CHUNK_MAZES)
    while len(mazes) < count:
        needed = count - len(mazes)
        sizes = [min(_CHUNK_MAZES, needed - start) for start in range(0, needed, _CHUNK_MAZES)]
        if next_chunk + len(sizes) > max_chunks:
            raise DatasetError(
                f"found only {len(mazes)} distinct {side}×{side} mazes with min_path_length {min_path_length} "
                f"for a split of {count}: too few such mazes exist; lower the sizes or min_path_length"
            )
        jobs = [(side, min_path_length, config.seed, split_index, next_chunk + i, n) for i, n in enumerate(sizes)]
        next_chunk += len(jobs)
        pool, results = _pool(workers, len(jobs)), []
        try:
            for result in pool.map(_generate_chunk, jobs) if pool else map(_generate_chunk, jobs):
                results.append(result)
                logger.info("maze split %d: job %d/%d done", split_index, len(results), len(jobs))
        finally:
            if pool:
                pool.shutdown()
        for chunk_mazes, chunk_solutions, chunk_stats in results:
            stats.add(chunk_stats)
            for maze, solution in zip(chunk_mazes, chunk_solutions):
                key = _dihedral_key(maze)
                if key in taken:
                    duplicates += 1
                    continue
                taken.add(key)
                mazes.append(maze)
                solutions.append(solution)
    return np.stack(mazes[:count]), np.stack(solutions[:count]), duplicates


def _csv_split(path: Path, count: int | None, rng: np.random.Generator, side: int | None, field: str):
    """The mazes of one CSV file; ``count`` of them (a seeded subsample, file order kept) unless None."""
    mazes, solutions = read_maze_csv(path)
    if side is not None and mazes.shape[1] != side:
        raise DatasetError(f"{path}: the mazes are {mazes.shape[1]}×{mazes.shape[1]} but size={side}")
    if count is not None:
        if count > len(mazes):
            raise DatasetError(f"{path} holds {len(mazes)} mazes, fewer than {field}={count}; lower it or use None")
        if count < len(mazes):
            keep = np.sort(rng.choice(len(mazes), size=count, replace=False))
            mazes, solutions = mazes[keep], solutions[keep]
    return mazes, solutions


def _split_arrays(mazes: np.ndarray, solutions: np.ndarray, augment: bool, split: str):
    """Encode one split; every written (maze, label) pair, augmented ones included, is checked first."""
    transforms = range(NUM_DIHEDRAL) if augment else range(1)
    variants = [
        [(dihedral_transform(maze, tid), dihedral_transform(solution, tid)) for tid in transforms]
        for maze, solution in zip(mazes, solutions)
    ]
    all_mazes = np.stack([maze for group in variants for maze, _ in group])
    all_labels = np.stack([label for group in variants for _, label in group])
    bad = np.flatnonzero(~_valid_optimal_batch(all_mazes, all_labels))
    if bad.size:
        first = bad[0]
        raise DatasetError(
            f"{split} maze {first // len(transforms)} (dihedral {first % len(transforms)}): the label is not a "
            f"valid shortest path: {path_problem(all_mazes[first], all_labels[first])}"
        )
    builder = SplitBuilder(mazes.shape[1] * mazes.shape[2])
    for group in variants:
        builder.add_group([(0, [(maze.ravel(), label.ravel())]) for maze, label in group])
    return builder.arrays()


def _length_stats(solutions: np.ndarray) -> dict:
    lengths = (solutions == PATH).sum(axis=(1, 2)) + 2
    return {
        "min": int(lengths.min()),
        "median": float(np.median(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "max": int(lengths.max()),
    }


def build_maze_dataset(config: MazeBuildConfig | dict) -> Path:
    """Build a Maze dataset in the official format (see the module docstring) and return its folder.

    Train and test mazes are disjoint, also up to the dihedral symmetries (generated ones are deduplicated; for
    CSV files the overlap is only counted). Every written pair (augmentations included) is checked to be a
    valid shortest path, and generated mazes to reach ``min_path_length``. ``build.json`` beside the splits
    records the config (without ``out_dir``, ``overwrite``, ``workers``), the counts, the path-length
    statistics and, for ``generate``, the acceptance rates. The same config and seed give byte-identical
    files whatever ``workers``."""
    config = MazeBuildConfig.from_dict(config)
    if config.out_dir.exists() and not config.overwrite:
        raise DatasetError(f"{config.out_dir} already exists; choose another output folder or pass overwrite")
    build_info: dict = {
        "builder": "reasonlens.hrm.data.maze",
        "config": config.model_dump(mode="json", exclude={"out_dir", "overwrite", "workers"}),
    }
    if config.source == "generate":
        stats, taken = GenerationStats(), set()
        train_mazes, train_solutions, train_dups = _generate_split(config, 0, config.train_size, taken, stats)
        test_mazes, test_solutions, test_dups = _generate_split(config, 1, config.test_size, taken, stats)
        min_length = config.resolved_min_path_length
        for split, solutions in (("train", train_solutions), ("test", test_solutions)):
            if _length_stats(solutions)["min"] < min_length:
                raise DatasetError(f"{split}: a generated maze is shorter than min_path_length={min_length}")
        build_info["generation"] = {
            "attempts": stats.attempts,
            "accepted": stats.accepted,
            "acceptance_rate": stats.acceptance_rate,
            "plain_rejection_acceptance_rate": stats.plain_acceptance,
            "oversampling": default_oversampling(config.side, config.side, min_length),
            "shared_layouts": stats.shared_layouts,
            "duplicates_dropped": train_dups + test_dups,
        }
    else:
        rng = np.random.default_rng(config.seed)
        train_mazes, train_solutions = _csv_split(config.train_csv, config.train_size, rng, config.size, "train_size")
        test_mazes, test_solutions = _csv_split(config.test_csv, config.test_size, rng, config.size, "test_size")
        if train_mazes.shape[1:] != test_mazes.shape[1:]:
            raise DatasetError(f"{config.train_csv} and {config.test_csv} hold mazes of different sizes")
        train_keys = {_dihedral_key(maze) for maze in train_mazes}
        build_info["csv"] = {
            "train_test_overlap": sum(_dihedral_key(maze) in train_keys for maze in test_mazes),
        }

    side = train_mazes.shape[1]
    splits, split_info = {}, {}
    for split, mazes, solutions, augment in (
        ("train", train_mazes, train_solutions, config.aug),
        ("test", test_mazes, test_solutions, False),
    ):
        arrays = _split_arrays(mazes, solutions, augment, split)
        splits[split] = (make_metadata(arrays, vocab_size=VOCAB_SIZE, num_puzzle_identifiers=1), arrays)
        split_info[split] = {
            "groups": arrays.num_groups,
            "puzzles": arrays.num_puzzles,
            "examples": arrays.num_examples,
            "path_length": _length_stats(solutions),
            "wall_fraction_mean": round(float((mazes == WALL).mean()), 4),
        }
    build_info.update(
        size=side,
        seq_len=side * side,
        vocab_size=VOCAB_SIZE,
        min_path_length=config.resolved_min_path_length,
        path_length_unit="cells on the shortest path, S and G included",
        tie_break=TIE_BREAK,
        splits=split_info,
    )
    return write_dataset(
        config.out_dir,
        splits,
        identifiers=[BLANK_IDENTIFIER],
        extra_files={"build.json": json.dumps(build_info, indent=2) + "\n"},
        overwrite=config.overwrite,
    )


__all__ = [
    "CHARSET",
    "CSV_HEADER",
    "FREE",
    "GOAL",
    "HARD_MIN_PATH_LENGTH",
    "PAD",
    "PATH",
    "START",
    "TIE_BREAK",
    "VOCAB_SIZE",
    "WALL",
    "GenerationStats",
    "MazeBuildConfig",
    "as_maze",
    "build_maze_dataset",
    "count_shortest_paths",
    "decode",
    "default_oversampling",
    "encode",
    "generate_maze",
    "generate_mazes",
    "is_valid_optimal_path",
    "maze_shape",
    "maze_to_string",
    "parse_maze_csv",
    "path_accuracy",
    "path_length",
    "path_problem",
    "read_maze_csv",
    "render",
    "shortest_path",
    "solve",
    "string_to_tokens",
    "tokens_to_grid",
    "wall_count_range",
    "write_maze_csv",
]
