"""What a generated maze may be: its size, its wall count, and the minimum length of its shortest path, the
difficulty filter of Maze-Hard.

**Path length** is the number of cells on a shortest path, S and G included (the length of Lehnert et al.'s plan,
``moves + 1``). The official data keeps HRM's "difficulty > 110"; we read it as this length and keep
``path_length >= 111`` (:data:`HARD_MIN_PATH_LENGTH`) on 30×30 (:data:`HARD_SIZE`); elsewhere the default minimum
is Lehnert et al.'s ``max(H, W)``.
"""

from __future__ import annotations

import numpy as np

from reasonlens.hrm.data.maze.encoding import MAX_SIDE

MIN_GENERATED_SIDE = 5
HARD_SIZE = 30
HARD_MIN_PATH_LENGTH = 111  # HRM's Maze-Hard: shortest path > 110


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
