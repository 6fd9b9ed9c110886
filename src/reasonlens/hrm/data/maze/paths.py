"""Shortest paths on one maze (plain BFS) and the check that a prediction is a valid optimal path.

**Tie-break** (:func:`solve`): BFS distances to G, then a walk from S that always steps to the first neighbour
one step closer to G in the order up, down, left, right (row − 1, row + 1, column − 1, column + 1). This gives
the lexicographically smallest move sequence (U < D < L < R) among all shortest paths. Mazes often have several
shortest paths (:func:`count_shortest_paths`) and the official labels break ties their own way (the augmented
labels are rotated, too), so besides the official metric, exact match with the label,
:func:`is_valid_optimal_path` checks the paper's criterion: the ``o`` cells form a connected path of free cells
from S to G of optimal length and nothing else changed (:func:`.batch_bfs.path_accuracy` reports both).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from reasonlens.hrm.data.format import DatasetError
from reasonlens.hrm.data.maze.encoding import (
    CHARSET,
    FREE,
    GOAL,
    PATH,
    START,
    WALL,
    _is_text,
    as_maze,
    encode,
)

TIE_BREAK = "from S, step to the first neighbour one step closer to G in the order up, down, left, right"

_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: the tie-break order


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
