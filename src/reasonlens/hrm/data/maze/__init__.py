"""Maze datasets for HRM (Maze-Hard), one concern per module, in reading order:

- :mod:`.encoding`: the official token encoding and the conversions between maze strings, char grids and token
  grids;
- :mod:`.paths`: shortest paths on one maze (BFS, the tie-break of the labels) and the valid-optimal-path check;
- :mod:`.batch_bfs`: the same check bit-parallel over a batch of mazes, and the :func:`path_accuracy` metric;
- :mod:`.difficulty`: admissible sizes, wall counts and minimum path lengths (Maze-Hard: > 110 cells on 30×30);
- :mod:`.generator`: Lehnert et al.'s random mazes, sampled with a batched BFS;
- :mod:`.official_csv`: the official CSV files;
- :mod:`.builder`: :func:`build_maze_dataset` and its :class:`MazeBuildConfig`, writing the official on-disk
  format (:mod:`reasonlens.hrm.data.format`).

The public names of every module are re-exported here.
"""

from reasonlens.hrm.data.maze.batch_bfs import path_accuracy
from reasonlens.hrm.data.maze.builder import MazeBuildConfig, build_maze_dataset
from reasonlens.hrm.data.maze.difficulty import HARD_MIN_PATH_LENGTH, maze_shape, wall_count_range
from reasonlens.hrm.data.maze.encoding import (
    CHARSET,
    FREE,
    GOAL,
    PAD,
    PATH,
    START,
    VOCAB_SIZE,
    WALL,
    as_maze,
    decode,
    encode,
    maze_to_string,
    render,
    string_to_tokens,
    tokens_to_grid,
)
from reasonlens.hrm.data.maze.generator import GenerationStats, default_oversampling, generate_maze, generate_mazes
from reasonlens.hrm.data.maze.official_csv import CSV_HEADER, parse_maze_csv, read_maze_csv, write_maze_csv
from reasonlens.hrm.data.maze.paths import (
    TIE_BREAK,
    count_shortest_paths,
    is_valid_optimal_path,
    path_length,
    path_problem,
    shortest_path,
    solve,
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
