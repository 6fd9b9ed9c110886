"""The official Maze CSV files (HF ``sapientinc/maze-30x30-hard-1k``): header ``source,q,a,rating``, ``q`` the
maze and ``a`` its solution as strings of ``H·W`` characters (the side is the square root of the length),
``rating`` unused (we write the path length). Every row read is checked."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from reasonlens.hrm.data.format import DatasetError
from reasonlens.hrm.data.maze.batch_bfs import _valid_optimal_batch
from reasonlens.hrm.data.maze.encoding import (
    PATH,
    _check_maze,
    _square_side,
    maze_to_string,
    string_to_tokens,
    tokens_to_grid,
)
from reasonlens.hrm.data.maze.paths import path_problem
from reasonlens.utils.io import atomic_write

CSV_HEADER = ("source", "q", "a", "rating")


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
