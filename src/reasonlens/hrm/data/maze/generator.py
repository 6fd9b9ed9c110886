"""The maze generator (:func:`generate_maze`, :func:`generate_mazes`), our own code after the procedure of
Lehnert et al., "Beyond A*" (arXiv 2402.14083, ``searchformer/maze.py``).

The number of walls is uniform in ``[⌊n/10⌋·3, ⌊n/10⌋·5]`` of the ``n = H·W`` cells, the walls sit on uniformly
random cells, S and G are distinct uniformly random free cells, and a maze is kept only if G is reachable with
``path_length >= min_path_length`` (Lehnert: ``max(H, W)``; HRM's Maze-Hard adds ``> 110`` on 30×30; see
:mod:`.difficulty`). Long paths are rare (about 1.6e-5 of the draws for Maze-Hard), so instead of drawing G and
rejecting, one bit-parallel BFS from S (rows as uint64 bit masks, a batch of mazes per numpy op) finds all ``k``
goals that would be accepted; the draw (walls, S) then yields ``⌊x⌋`` or ``⌈x⌉`` mazes (mean
``x = M·k/(free − 1)``) with distinct goals drawn uniformly among the ``k``. The expected number of mazes per
(walls, S, G) is ``M/(free − 1)`` times its probability under the plain procedure, so the mazes follow the same
distribution, ``M`` times faster (:func:`default_oversampling`: 4 for very long paths such as Maze-Hard, else 1);
``x > 1``, two mazes sharing walls and S, is rare and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasonlens.hrm.data.maze.batch_bfs import _bits_to_mask, _cell_bits, _mask_to_bits, _neighbours, _popcount
from reasonlens.hrm.data.maze.difficulty import _resolve_min_path_length, maze_shape, wall_count_range
from reasonlens.hrm.data.maze.encoding import FREE, GOAL, START, WALL
from reasonlens.hrm.data.maze.paths import solve

LONG_PATH_OVERSAMPLING = 4
_FIRST_BATCH, _MAX_BATCH = 256, 4096


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
